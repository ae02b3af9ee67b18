"""The task table of ``bench run``: which method outputs each dataset task scores, its default
metrics, and the datasets of each profile (the one place for these facts)."""
from __future__ import annotations

#: Which method outputs each dataset task scores.
FITS = {"detection": ("blur_map",), "defocus_map": ("blur_map",), "patch_blur": ("blur_map",),
        "enhancement": ("enhanced_image", "restored_image"), "restoration": ("restored_image",),
        "nr_enhancement": ("enhanced_image", "restored_image")}


#: Metrics run by default on each task.
DEFAULT_METRICS = {
    "detection": ("accuracy_alpha", "accuracy_oracle", "pr_hifst"),
    "defocus_map": ("mae_radius", "mae_relative", "mae_dmenet"),
    "patch_blur": ("mae_sigma", "level_accuracy"),
    "enhancement": ("psnr", "ssim", "psnr_y", "ssim_y", "niqe", "brisque", "piqe"),
    "restoration": ("psnr", "ssim", "psnr_y", "ssim_y", "niqe", "brisque", "piqe"),
    "nr_enhancement": ("niqe", "brisque", "piqe"),     # photos without a reference (Galetto & Deng Table 6)
}


PROFILE_DATASETS = {"quick": ("synth_detection", "synth_defocus", "synth_enhance"),
                    "full": ("synth_detection", "synth_defocus", "synth_enhance", "cuhk", "rtf")}
