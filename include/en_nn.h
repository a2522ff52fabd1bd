/*
 * en_nn.h - echonetd's embedded inference engine: EchoNet-Dynamic's two
 * networks (DeepLabV3-ResNet50 segmentation, R(2+1)D-18 ejection fraction)
 * run in-process on the CPU over OpenBLAS, with no Python.
 *
 * A model is loaded from a safetensors weights file written by
 * tools/convert-weights (torchvision tensor names, float32, metadata with the
 * architecture, the input normalisation, the clip sampling, the origin and a
 * SHA-256 of the tensor data).  Channel widths come from the file, so
 * reduced-width variants of the same topology run with the same code.
 * A model loaded before fork() works in the child (its own threads start
 * at its first call).
 *
 * The engine knows tensors and layers, not DICOM or the daemon.  A model
 * object is not reentrant: one call at a time per model (load two models, or
 * serialise, to run from several threads).  See docs/engine.md.
 */
#ifndef EN_NN_H
#define EN_NN_H

#include <stddef.h>

#include "en_err.h"
#include "en_frames.h"

typedef struct en_nn_model en_nn_model;

typedef enum en_nn_arch {
    EN_NN_ARCH_DEEPLABV3_RESNET50 = 1,   /* segmentation: logits per pixel */
    EN_NN_ARCH_R2PLUS1D_18 = 2           /* ejection fraction per clip */
} en_nn_arch;

/* Arithmetic of the convolutions' matrix products ([nn] precision).
 * FP32: OpenBLAS sgemm, the parity path (torchvision to float rounding).
 * BF16: operands rounded to bfloat16, products accumulated in fp32, on the
 * CPU's AMX-BF16 tiles or AVX512-BF16 dot products (docs/engine.md);
 * accuracy against fp32 is gated by tests (EF within 1 point, masks).
 * AUTO: BF16 where the CPU runs it faster than fp32, else FP32.
 * The values are those of en_config's [nn] precision (EN_PRECISION_*): the
 * engine does not depend on the configuration module. */
typedef enum en_nn_prec {
    EN_NN_PREC_AUTO = 0,
    EN_NN_PREC_FP32 = 1,
    EN_NN_PREC_BF16 = 2
} en_nn_prec;

/* "auto", "fp32", "bf16" -> *out; EN_EINVAL for anything else. */
int en_nn_prec_parse(const char *s, en_nn_prec *out);
const char *en_nn_prec_name(en_nn_prec p);

/* Run-time options.  Zero-initialise, then set what you need. */
typedef struct en_nn_opts {
    int threads;       /* worker threads, 0 = all online cores */
    int batch;         /* segmentation frames per pass, 0 = 8 */
    int skip_hash;     /* 1 = do not verify content_sha256 at load (it is
                          still recorded); default verifies */
    en_nn_prec precision;   /* 0 = auto; bf16 on a CPU without it
                                    fails the load (EN_EUNSUPPORTED) */
} en_nn_opts;

/* What the weights file says about itself (its __metadata__). */
typedef struct en_nn_info {
    en_nn_arch arch;
    const char *arch_name;     /* "deeplabv3_resnet50" / "r2plus1d_18" */
    float mean[3];             /* input normalisation, 0-255 pixel scale */
    float std[3];
    int clip_frames;           /* EF clip length (32); 1 for segmentation */
    int clip_period;           /* EF sampling period (2); 1 for segmentation */
    const char *origin;        /* where the weights came from (free text) */
    const char *sha256;        /* hex SHA-256 of the file's tensor data */
    int hash_verified;         /* 1 when sha256 was checked at load */
    int threads;               /* effective thread count */
    int batch;                 /* effective segmentation batch */
    size_t nparams;            /* float parameters in the file */
    const char *blas_core;     /* OpenBLAS kernel set in use ("Haswell",
                                  "Cooperlake", ...): speed depends on it */
    en_nn_prec precision; /* effective: FP32 or BF16, never AUTO */
    const char *kernel;        /* matrix kernels: "fp32" (the engine's own
                                  AVX-512 kernel, OpenBLAS on CPUs without
                                  AVX-512), "amx" or "avx512bf16" */
} en_nn_info;

/* Loads and checks a weights file (every tensor's name, dtype and shape), folds
 * BatchNorm into the convolutions and prepares the network.  Errors name the
 * file and the offending tensor.  en_nn_model_load uses default options. */
int en_nn_model_load(const char *path, en_nn_model **out, en_err *err);
int en_nn_model_load_opts(const char *path, const en_nn_opts *opts,
                          en_nn_model **out, en_err *err);
void en_nn_model_free(en_nn_model *m);

/* Plans every layer for frames of rows x cols (and the model's clip length)
 * by running once on zeros (a batch of frames, or one clip), so that the
 * first real call pays nothing but its own work.  With it a process can
 * load and prepare both models once and fork a child per study: the child
 * shares the packed weights copy-on-write and starts its own worker
 * threads at its first call; calling this again in the child, before its
 * study arrives, also takes its first-touch costs off the study's time
 * (docs/engine.md, "Loading once"). */
int en_nn_model_prepare(en_nn_model *m, int rows, int cols, en_err *err);

/* Gives back the working memory of the last calls (activations, the
 * threads' scratch, the normalised input), keeping the weights and every
 * layer's plan; the next call takes it again, paying its first touch.  A
 * process that runs one network after the other trims the first before
 * the second runs, so the two working sets are never resident together
 * (docs/engine.md, "Memory"). */
void en_nn_model_trim(en_nn_model *m);

const en_nn_info *en_nn_model_info(const en_nn_model *m);

/* Any __metadata__ value by key, NULL when absent. */
const char *en_nn_model_meta(const en_nn_model *m, const char *key);

/* Segmentation.  frames: n normalised frames, float NCHW (n x 3 x h x w).
 * logits: n x h x w, a pixel is left ventricle where its logit is > 0.
 * Frames go through the network `batch` at a time, so working memory is
 * bounded by the batch, not by n.  h, w: 112 for EchoNet (any size >= 32
 * works: the network is fully convolutional). */
int en_nn_segment(en_nn_model *m, const float *frames, size_t n, int h, int w,
                  float *logits, en_err *err);

/* Segmentation of 8-bit frames (grey or RGB, as en_video_read gives them),
 * normalised with the model's mean/std a batch at a time.  logits: nframes x
 * rows x cols.  sizes (may be NULL): per-frame LV pixel counts (logit > 0),
 * EchoNet's size.csv "Size" column. */
int en_nn_segment_frames(en_nn_model *m, const en_frames *frames,
                         float *logits, int *sizes, en_err *err);

/* Ejection fraction of one clip.  clip: normalised float C,T,H,W (3 x t x h x
 * w; EchoNet: t = 32, h = w = 112).  *ef: percent. */
int en_nn_ef(en_nn_model *m, const float *clip, int t, int h, int w,
             float *ef, en_err *err);

/* EF of the clip starting at frame `start` of 8-bit frames, sampled as
 * upstream does: clip_frames frames every clip_period frames.  Frames past the
 * end of the video are zero after normalisation (mean-coloured), which is how
 * upstream pads videos shorter than a clip; upstream never starts a clip that
 * runs past the end of a longer video, so whether to ask for one is the
 * caller's decision (spec section 6).  EN_EINVAL when start is outside the
 * video. */
int en_nn_ef_frames(en_nn_model *m, const en_frames *frames, int start,
                    float *ef, en_err *err);

/* Normalises 8-bit frames [first, first+count) into float NCHW (count x 3 x
 * rows x cols) with the model's mean/std; grey frames are replicated to three
 * channels as upstream's videos are. */
void en_nn_normalize(const en_nn_model *m, const en_frames *frames, int first,
                     int count, float *out);

#endif
