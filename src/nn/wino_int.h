/*
 * wino_int.h - what conv_wino.c shares with its AVX-512 transforms
 * (conv_wino_avx512.c): the transform formulas, written once for any
 * vector type, and the 16-tile entry points.
 */
#ifndef EN_NN_WINO_INT_H
#define EN_NN_WINO_INT_H

#include <stdint.h>

/* y = B^T x for a 6-vector (stride s in, stride so out) of vectors of
 * type T, one tile per lane; B^T rows (4,0,-5,0,1,0) (0,-4,-4,1,1,0)
 * (0,4,-4,-1,1,0) (0,-2,-1,2,1,0) (0,2,-1,-2,1,0) (0,4,0,-5,0,1) */
#define NN_WINO_BT6(T, x, s, y, so) do {                                       \
        T x0 = (x)[0], x1 = (x)[(s)], x2 = (x)[2 * (s)], x3 = (x)[3 * (s)],  \
          x4 = (x)[4 * (s)], x5 = (x)[5 * (s)];                                \
        (y)[0] = 4.0f * x0 - 5.0f * x2 + x4;                                   \
        (y)[(so)] = -4.0f * (x1 + x2) + x3 + x4;                               \
        (y)[2 * (so)] = 4.0f * (x1 - x2) - x3 + x4;                            \
        (y)[3 * (so)] = 2.0f * (x3 - x1) - x2 + x4;                            \
        (y)[4 * (so)] = 2.0f * (x1 - x3) - x2 + x4;                            \
        (y)[5 * (so)] = 4.0f * x1 - 5.0f * x3 + x5;                            \
    } while (0)

/* y = A^T m for a 6-vector: A^T rows (1,1,1,1,1,0) (0,1,-1,2,-2,0)
 * (0,1,1,4,4,0) (0,1,-1,8,-8,1) */
#define NN_WINO_AT6(T, m, s, y, so) do {                                       \
        T m0 = (m)[0], m1 = (m)[(s)], m2 = (m)[2 * (s)], m3 = (m)[3 * (s)],  \
          m4 = (m)[4 * (s)], m5 = (m)[5 * (s)];                                \
        T s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;        \
        (y)[0] = m0 + s12 + s34;                                               \
        (y)[(so)] = d12 + 2.0f * d34;                                          \
        (y)[2 * (so)] = s12 + 4.0f * s34;                                      \
        (y)[3 * (so)] = d12 + 8.0f * d34 + m5;                                 \
    } while (0)

/* 16 consecutive tiles, made once per chunk of tiles (every channel
 * reuses it).  Output q = 4u + v of lane l goes to y[q][l] in an output
 * channel's plane, r[q][l] in the residual's; live[q]: the lanes whose
 * output q exists.  A tile with fewer than 4 outputs along an axis (at
 * the edges of a sub-grid) needs fewer of the 6 points there: F(3,3) on
 * points 0, 1, -1, 2, inf, F(2,3) on 0, 1, -1, inf, the same points as
 * F(4,3)'s, whose transformed weights serve them (their own scale folded
 * into their input transform).  y3, x3 (y2, x2): the lanes with 3 (2 or
 * 1) outputs along H, W; use[p]: the live lanes that need point p; off[p]:
 * where the group's first such tile goes in point p's rows (the tiles
 * that need a point are stored side by side, in order). */
typedef struct nn_wino16_map {
    int32_t y[16][16], r[16][16];
    int32_t off[36];
    uint16_t live[16], use[36];
    uint16_t y3, y2, x3, x2;
} nn_wino16_map;

/* The AVX-512 transforms can run (cpu.c found AVX-512, EN_NN_WINO16 is
 * not 0). */
int nn_wino16_usable(void);

/* Input channel ci of tiles t < n (groups map[0], map[1], ...), whose
 * patches start at pad + pin[t] (points at pad + pin[t] + patch[p]): B^T d
 * B, point p of the tile at V[p * pstride + ci * np[p] + column] with
 * column counted from map[0]'s. */
void nn_wino16_in(const float *pad, const int32_t *pin, int64_t n, const int32_t patch[36],
                  const nn_wino16_map *map, float *V, int64_t pstride, const int64_t np[36],
                  int64_t ci);

/* Output channel co (yc, residual rc or NULL) of tiles t < n from M, laid
 * out as V above: A^T M A + bias, + residual, ReLU. */
void nn_wino16_out(const float *M, int64_t pstride, const int64_t np[36], int64_t co,
                   int64_t n, const nn_wino16_map *map, float bias, float *yc,
                   const float *rc, int relu);

#endif
