"""Low-light raw denoising: inverse/forward ISP, image sources, noise models,
a simulated sensor, denoisers, PSNR/SSIM and the ``denoising`` task."""
