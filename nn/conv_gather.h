/* conv_gather.h - Conv2d by gathered tiles (conv_gather.c), private to nn/: forward,
 * backward-data and weight gradient of the convolutions with enough taps and channels
 * (ops_conv.c asks each serves_* function and keeps its im2col road for the others).
 *
 * An implicit im2col: the tiles (conv_tile.h: nn_gather_kernel) take mr output pixels as
 * their rows and nr output channels as their columns, read each pixel's taps by offsets
 * into a zero-padded copy of the input and the weights as packed panels of nr channels.
 * No im2col matrix is written; in the forward pass each tile's sum over taps is the one of
 * ops_conv.c's tiles (k in order from 0, then the bias) less the products with padding
 * zeros that it skips, so the outputs are the same values (but for the sign of an exact
 * zero). */
#ifndef T2I_CONV_GATHER_H
#define T2I_CONV_GATHER_H

#include <stddef.h>

#include "ops.h"

/* Whether the gathered forward serves conv s (ops_conv.c keeps the others). */
/* Rows ih0 .. ih0+prows-1 of one channel plane src (H x W) into d, rows of PW = W + 2*pad
 * floats: zero columns either side, zero rows where ih is outside 0..H-1 (the padded copy
 * both convolution roads read their taps from). */
void nn_conv_pad_rows(float *d, const float *src, int H, int W, int pad, int ih0, int prows);

int nn_conv_gather_serves(const nn_conv *s);

/* The most floats of a block's padded input (0: the default); tests make it small to
 * reach bands of one row. Call before sizing scratch. */
void nn_conv_gather_set_block_floats(size_t floats);

/* Floats of scratch for nslots threads. */
size_t nn_conv_gather_scratch(const nn_conv *s, int nslots);

/* out = conv(inp, w) + b, or out += conv(inp, w) when add (b is then NULL), on nt <= nslots
 * threads (the scratch was sized for nslots). */
void nn_conv_gather_forward(float *out, float *scratch, const float *inp, const float *w, const float *b,
                            const nn_conv *s, int add, int nt);

/* The forward of a stride-1 conv with few taps (a first layer) by row tiles
 * (conv_tile.h: nn_row_kernel): rows_serves says whether it serves s, rows_scratch its
 * scratch; out = conv(inp, w) + b, or out += conv(inp, w) when add (b NULL). The same
 * sums as the im2col road. */
int nn_conv_rows_serves(const nn_conv *s);
size_t nn_conv_rows_scratch(const nn_conv *s, int nslots);
void nn_conv_rows_forward(float *out, float *scratch, const float *inp, const float *w, const float *b,
                          const nn_conv *s, int add, int nt);

/* Backward-data of a stride-1 conv s with a square kernel and pad < KH, as the forward
 * conv of dY by the turned, transposed kernel: dinp += conv'(dout). serves_data says
 * whether it serves s, data_scratch its scratch. */
int nn_conv_gather_serves_data(const nn_conv *s);
size_t nn_conv_gather_data_scratch(const nn_conv *s, int nslots);
void nn_conv_gather_backward_data(float *dinp, float *scratch, const float *dout, const float *w, const nn_conv *s,
                                  int nt);

/* Backward-data of a conv of stride 2 or more with a square kernel of K >= stride, by
 * phases of the input pixels (ih, iw mod stride), each a small stride-1 gathered conv of
 * dY: dinp += conv'(dout). */
int nn_conv_gather_serves_sdata(const nn_conv *s);
size_t nn_conv_gather_sdata_scratch(const nn_conv *s, int nslots);
void nn_conv_gather_backward_sdata(float *dinp, float *scratch, const float *dout, const float *w, const nn_conv *s,
                                   int nt);

/* dw += the weight gradient of conv s (not db), for a conv with more than 64 taps and
 * channels that fill half a panel at least (serves_weight). */
int nn_conv_gather_serves_weight(const nn_conv *s);
size_t nn_conv_gather_weight_scratch(const nn_conv *s, int nslots);
void nn_conv_gather_backward_weight(float *dw, float *scratch, const float *dout, const float *inp, const nn_conv *s,
                                    int nt);

#endif
