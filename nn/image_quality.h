/* image_quality.h - full-reference quality of 8-bit images: PSNR (RGB and luma) and SSIM.
 *
 * On 8-bit RGB images (h, w, 3) interleaved, `border` pixels cropped on every side.
 * PSNR: 10 log10(255^2 / MSE), over R, G and B, or over Y = 16 + (65.481 R + 128.553 G
 * + 24.966 B) / 255 (BT.601, RGB in 0..255, Y unrounded); +inf for identical images.
 * SSIM on Y: Gaussian window 11, sigma 1.5, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2,
 * statistics over the valid positions only, mean of the map (Wang et al. 2004); NaN when
 * the cropped image is smaller than the window.
 */
#ifndef T2I_IMAGE_QUALITY_H
#define T2I_IMAGE_QUALITY_H

#include <stdint.h>

double t2i_psnr_rgb(const uint8_t *a, const uint8_t *b, int h, int w, int border);
double t2i_psnr_y(const uint8_t *a, const uint8_t *b, int h, int w, int border);
double t2i_ssim_y(const uint8_t *a, const uint8_t *b, int h, int w, int border);

#endif
