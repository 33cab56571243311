"""Builder arguments of `mnc` for the package's CPU runs (pass them to
`create_model("mnc", **preset)`), as keras-hub keeps presets beside a family."""

# MNC on the built-in shapes at 64 x 64 (objects of 10 to 21 pixels) on a
# CPU: the light backbone (stride 8, anchors of 16, 32, 64 pixels), a 7 x 7
# RoI grid with one sample per bin, 28 x 28 masks, fc layers of 256, 32 RoIs
# per image, 64 proposals, 20 detections. Pass as `model_kwargs`.
SHAPES_MNC = {
    "backbone": "light",
    "fc_units": 256,
    "roi_size": 7,
    "roi_sampling_ratio": 1,
    "rois_per_image": 32,
    "pre_nms_top_n": 1000,
    "post_nms_top_n": 64,
    "max_detections": 20,
}


# MNC on COCO images resized to 256 x 256 on a CPU (the docs' COCO-slice
# run): the light backbone with anchors of 16 to 128 pixels, a 7 x 7 RoI
# grid, fc layers of 512 (the default 4096 on 7 x 7 x 128 RoI features would
# be 26M weights a layer), 50 detections.
COCO_LIGHT_MNC = {
    "backbone": "light",
    "fc_units": 512,
    "roi_size": 7,
    "anchor_scales": (16, 32, 64, 128),
    "max_detections": 50,
}
