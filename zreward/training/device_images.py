"""Images preprocessed on the training device: beside a GPU, data-loader workers only decode.

The one preprocessing definition (zreward.models.processing: bicubic resize, normalize, patchify)
costs a loader's CPU milliseconds an image at 336 px (it upsamples ShapeWorld's 112-px renders;
`bench/bench_train_step.py` reports it as "collate ms/img"); a GPU does the same ops on a whole batch
at once. So beside a GPU the collators ship the decoded pixels as uint8 (a quarter of the float bytes
to pin and copy) and the training step runs the same definition on the device. The values are identical: a decoded image is
uint8 / 255 either way.
"""

from __future__ import annotations

import torch

from zreward.models.processing import preprocess_images


def stack_uint8(images: list[torch.Tensor]) -> torch.Tensor | None:
    """[0, 1] float (3, H, W) images -> one uint8 (B, 3, H, W) stack; None when the sizes differ
    (the caller then preprocesses on the CPU, which resizes each image on its own)."""
    if len({tuple(im.shape) for im in images}) != 1:
        return None
    return torch.stack(images).mul_(255).round_().to(torch.uint8)


def attach_pixels(inputs: dict, image_size: int, family) -> dict:
    """Replaces inputs["images"] (uint8, on the device) by pixel_values + image_grid_thw, in place.

    A batch without "images" (preprocessed by its collator) passes unchanged.
    """
    images = inputs.pop("images", None)
    if images is not None:
        inputs["pixel_values"], inputs["image_grid_thw"] = preprocess_images(images.float().div_(255), image_size, family)
    return inputs
