/*
 * cpu.c - which matrix-product kernels this CPU can run, decided once at run
 * time: the rest of the engine is built for baseline x86-64, and the bf16
 * kernels (gemm_avx512.c, gemm_amx.c) only run after these checks pass.
 *
 * A feature is usable when the CPU reports it (cpuid) AND the operating
 * system saves its registers across context switches (XCR0 via xgetbv):
 * AVX-512 needs the opmask and both ZMM state components, AMX the tile
 * configuration and tile data components, and on Linux the process must
 * also ask for the (8 KB) tile data state with arch_prctl before its first
 * tile instruction.  A seccomp filter or an old kernel that refuses it
 * simply leaves AMX out.
 *
 * "auto" takes AMX where it is usable.  Without AMX it takes the AVX512-BF16
 * kernel only where vdpbf16ps really is faster than fp32 FMAs: on AMD Zen 4
 * and 5 it does twice the products per instruction at the FMA rate, but on
 * Intel's Sapphire Rapids class one vdpbf16ps issues every other cycle,
 * slower per product than fp32 (measured here: 110 against 227 GFLOP/s per
 * core), so a short throughput probe (a fraction of a millisecond) decides.
 */
#include "gemm_int.h"
#include "en_nn.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifdef NN_X86_KERNELS
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* bf16 products per fp32 product below which auto keeps fp32 (the bf16
 * path also pays for packing and rounding) */
#define NN_BF16_MIN_GAIN 1.5

static nn_cpu cpu;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

#ifdef NN_X86_KERNELS
static uint64_t xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Linux: permission for the AMX tile data state (arch/x86/include/uapi/asm/prctl.h) */
#define NN_ARCH_REQ_XCOMP_PERM 0x1023
#define NN_XFEATURE_XTILEDATA 18

static void detect(void)
{
    unsigned a, b, c, d, max7;
    uint64_t x;

    if (__get_cpuid_max(0, NULL) < 7)
        return;
    __cpuid(1, a, b, c, d);
    if (!(c & (1u << 27)))                      /* OSXSAVE: xgetbv usable */
        return;
    x = xcr0();
    __cpuid_count(7, 0, max7, b, c, d);
    /* XCR0: SSE, AVX, opmask, ZMM0-15 upper halves, ZMM16-31 */
    cpu.avx512 = (x & 0xe6) == 0xe6 && (b & (1u << 16)) && (b & (1u << 17)) &&
                 (b & (1u << 30)) && (b & (1u << 31));
    if (cpu.avx512 && max7 >= 1) {
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        cpu.avx512bf16 = (a1 >> 5) & 1;
    }
    /* AMX-BF16 (EDX 22) and AMX-TILE (EDX 24), XTILECFG and XTILEDATA in
     * XCR0, then the kernel's permission */
    if (cpu.avx512bf16 && (d & (1u << 22)) && (d & (1u << 24)) &&
        (x & 0x60000) == 0x60000 &&
        syscall(SYS_arch_prctl, NN_ARCH_REQ_XCOMP_PERM, NN_XFEATURE_XTILEDATA) == 0)
        cpu.amx = 1;
    if (cpu.avx512bf16 && !cpu.amx)
        cpu.bf16_gain = nn_avx512_bf16_gain();
}
#else
static void detect(void)
{
}
#endif

const nn_cpu *nn_cpu_get(void)
{
    pthread_once(&cpu_once, detect);
    return &cpu;
}

int nn_kern_usable(nn_kern k)
{
    const nn_cpu *c = nn_cpu_get();
    switch (k) {
    case NN_KERN_FP32:
        return 1;
    case NN_KERN_AVX512BF16:
        return c->avx512bf16;
    case NN_KERN_AMX:
        return c->amx;
    }
    return 0;
}

const char *nn_kern_name(nn_kern k)
{
    switch (k) {
    case NN_KERN_FP32:
        return "fp32";
    case NN_KERN_AVX512BF16:
        return "avx512bf16";
    case NN_KERN_AMX:
        return "amx";
    }
    return "?";
}

int nn_kern_choose(int precision, nn_kern *out, en_err *err)
{
    const nn_cpu *c = nn_cpu_get();
    const char *force = getenv("EN_NN_KERNEL");
    nn_kern best = c->amx ? NN_KERN_AMX : c->avx512bf16 ? NN_KERN_AVX512BF16 : NN_KERN_FP32;

    if (precision == EN_NN_PREC_FP32) {
        *out = NN_KERN_FP32;
        return EN_OK;
    }
    if (precision != EN_NN_PREC_AUTO && precision != EN_NN_PREC_BF16)
        return en_err_set(err, EN_EINVAL, "nn: unknown precision %d", precision);
    if (force && *force) {
        nn_kern k;
        if (strcmp(force, "fp32") == 0)
            k = NN_KERN_FP32;
        else if (strcmp(force, "avx512bf16") == 0)
            k = NN_KERN_AVX512BF16;
        else if (strcmp(force, "amx") == 0)
            k = NN_KERN_AMX;
        else
            return en_err_set(err, EN_EINVAL, "nn: EN_NN_KERNEL='%.32s': use fp32, avx512bf16 "
                              "or amx", force);
        if (!nn_kern_usable(k))
            return en_err_set(err, EN_EUNSUPPORTED, "nn: EN_NN_KERNEL=%s, but this CPU (or its "
                              "operating system) cannot run that kernel", force);
        if (k == NN_KERN_FP32 && precision == EN_NN_PREC_BF16)
            return en_err_set(err, EN_EINVAL, "nn: EN_NN_KERNEL=fp32 contradicts precision bf16");
        *out = k;
        return EN_OK;
    }
    if (precision == EN_NN_PREC_BF16) {
        if (best == NN_KERN_FP32)
            return en_err_set(err, EN_EUNSUPPORTED, "nn: precision bf16 needs AVX512-BF16 or "
                              "AMX-BF16, which this CPU (or its operating system) does not "
                              "offer: set precision to auto or fp32");
        *out = best;
        return EN_OK;
    }
    if (best == NN_KERN_AVX512BF16 && c->bf16_gain < NN_BF16_MIN_GAIN)
        best = NN_KERN_FP32;
    *out = best;
    return EN_OK;
}
