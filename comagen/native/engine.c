/* The engine's per-token work between two ONNX steps, compiled (comagen.native): the leans, the draw
 * and the ring writes.
 *
 * Each ONNX step streams the weights through the core's caches and evicts the Python side's code and
 * data; a numpy call after it pays to bring its dispatch code back, so a token's twenty small numpy
 * calls cost about three times their hot time (docs/results.md, "the caches, measured"). These
 * functions do the same arithmetic as their numpy originals (comagen.generation.keyprior.kept_mass,
 * comagen.generation.density.DensityPrior._toward, comagen.generation.sampling.sample_rows) in a few
 * kilobytes of code, one row at a time. Logits are float32 as the runtime returns them; sums and
 * leans are double, as numpy promotes them.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_CLASSES 64  /* the pace lean's gap classes; comagen.native.MAX_CLASSES says the same */

/* A group's logits plus `lean`, shifted so the allowed ones keep their total probability; the rest
 * become -inf. `weight` is exp(lean). */
void kept_mass(float *logits, const uint8_t *allowed, long n, const double *lean, const double *weight)
{
    float top = -INFINITY;
    for (long i = 0; i < n; i++)
        if (allowed[i] && logits[i] > top)
            top = logits[i];
    double shift = 0.0, before = 0.0, after = 0.0;
    if (top > -INFINITY) {
        for (long i = 0; i < n; i++)
            if (allowed[i]) {
                double share = expf(logits[i] - top);
                before += share;
                after += share * weight[i];
            }
        shift = log(before / after);
    }
    for (long i = 0; i < n; i++)
        logits[i] = allowed[i] ? (float)(logits[i] + lean[i] + shift) : -INFINITY;
}

static long clip(long x, long low, long high) { return x < low ? low : (x > high ? high : x); }

/* The density lean on one row's timing tokens `ids` (positions, then the bar line, then pitches),
 * `since` grid positions from the row's last onset to the bar's start:
 * each class's mass moved `strength` of the way (in log) from the model's share to the prior's,
 * the allowed timing tokens keeping their total (at most MAX_CLASSES classes: the caller checks). */
void lean_timing(float *logits, const uint8_t *allowed, const double *per_gap, const double *tail, long since,
                const int64_t *ids, long n_positions, long n_pitches, const int64_t *positions,
                const int64_t *bin_of, long longest, long per_bar, long tail_class, double strength)
{
    long width = tail_class + 1, n = n_positions + 1 + n_pitches;
    double q[MAX_CLASSES] = {0}, m[MAX_CLASSES] = {0}, add[MAX_CLASSES];
    int pitch_ok = 0, any = 0;
    float top = -INFINITY;
    for (long j = 0; j < n; j++) {
        long id = ids[j];
        if (!allowed[id])
            continue;
        any = 1;
        if (j < n_positions) {
            long gap = clip(since + positions[j], 0, longest);
            q[bin_of[gap]] += per_gap[gap];
        } else if (j == n_positions)
            q[tail_class] += tail[clip(since + per_bar, 0, longest)];
        else
            pitch_ok = 1;
        if (logits[id] > top)
            top = logits[id];
    }
    if (!any)
        return;  /* only the end may come: nothing to lean */
    q[0] += pitch_ok ? per_gap[0] : 0.0;
    long cls[n];
    for (long j = 0; j < n; j++) {
        cls[j] = j < n_positions ? bin_of[clip(since + positions[j], 0, longest)]
               : (j == n_positions ? tail_class : 0);
        if (allowed[ids[j]])
            m[cls[j]] += expf(logits[ids[j]] - top);
    }
    double q_sum = 0.0, m_sum = 0.0, leaned = 0.0;
    for (long c = 0; c < width; c++) {
        q_sum += q[c];
        m_sum += m[c];
    }
    q_sum = q_sum > 1e-30 ? q_sum : 1e-30;
    for (long c = 0; c < width; c++) {
        double qc = q[c] / q_sum, mc = m[c] / m_sum;
        add[c] = strength * (log(qc > 1e-30 ? qc : 1e-30) - log(mc > 1e-30 ? mc : 1e-30));
        leaned += m[c] * exp(add[c]);
    }
    double shift = log(m_sum / leaned);
    for (long j = 0; j < n; j++) {
        long id = ids[j];
        logits[id] = allowed[id] ? (float)(logits[id] + (add[cls[j]] + shift)) : -INFINITY;
    }
    return 0;
}

/* One token from a row under its mask: greedy when temperature is 0, else the inverse CDF of
 * `uniform` over exp((logit - max) / temperature): the first index whose running sum passes
 * uniform x total, summed in the same order twice so no buffer is shared between threads. */
long draw_row(const float *logits, const uint8_t *allowed, long n, double temperature, double uniform)
{
    long best = 0;
    float top = -INFINITY;
    for (long i = 0; i < n; i++)
        if (allowed[i] && logits[i] > top) {
            top = logits[i];
            best = i;
        }
    if (temperature == 0.0)
        return best;
    float t = (float)temperature, x_top = temperature == 1.0 ? top : top / t;
    double total = 0.0;
    for (long i = 0; i < n; i++)
        total += allowed[i] ? expf((temperature == 1.0 ? logits[i] : logits[i] / t) - x_top) : 0.0f;
    double target = uniform * total, running = 0.0;
    for (long i = 0; i < n; i++) {
        running += allowed[i] ? expf((temperature == 1.0 ? logits[i] : logits[i] / t) - x_top) : 0.0f;
        if (running > target)
            return i;
    }
    return n - 1;
}

/* After a step: the new token's key and value rows into their ring slots (row j of `new_rows`, or row
 * src[j] when `src` is given, to row to[j] + seen % period[j] of `ring_rows`), then the new conv
 * states over the old (comagen.runtime.onnx_stream.OnnxStream.step). */
void ring_write(float *ring_rows, const float *new_rows, const int64_t *src, const int64_t *to,
                const int64_t *period, long n_rows, long dim, long seen, float *convs, const float *new_convs,
                long n_convs)
{
    for (long j = 0; j < n_rows; j++)
        memcpy(ring_rows + (to[j] + seen % period[j]) * dim, new_rows + (src ? src[j] : j) * dim,
               dim * sizeof(float));
    memcpy(convs, new_convs, n_convs * sizeof(float));
}

/* log p over `bins` from decayed counts, smoothed (comagen.generation.histogram.DecayedHistogram.log_p):
 * the counts spread by `kernel` [bins, bins] first when one is given. */
void histogram_log_p(const double *counts, const double *kernel, long bins, double smoothing, double *out)
{
    double total = 0.0;
    for (long j = 0; j < bins; j++) {
        double c = 0.0;
        if (kernel)
            for (long i = 0; i < bins; i++)
                c += counts[i] * kernel[i * bins + j];
        else
            c = counts[j];
        out[j] = c + smoothing;
        total += out[j];
    }
    for (long j = 0; j < bins; j++)
        out[j] = log(out[j] / total);
}

/* The pitch tokens' lean and its exp (comagen.generation.leans.Leans._pitch_lean): key strength x log p
 * of each token's pitch class plus register strength x log p of its key; either histogram may be absent. */
void pitch_lean(const double *key_log_p, const int64_t *classes, double key_strength, const double *register_log_p,
                double register_strength, long n, double *lean, double *weight)
{
    for (long i = 0; i < n; i++) {
        double x = key_log_p ? key_strength * key_log_p[classes[i]] : 0.0;
        x += register_log_p ? register_strength * register_log_p[i] : 0.0;
        lean[i] = x;
        weight[i] = exp(x);
    }
}

/* p(gap) with each bin's mass spread evenly over its gaps, and p(gap >= g)
 * (comagen.generation.density.DensityPrior.class_p). */
void gap_tables(const double *log_p, const int64_t *bin_of, const double *log_width, long gaps, double *per_gap,
                double *tail)
{
    for (long g = 0; g < gaps; g++)
        per_gap[g] = exp(log_p[bin_of[g]] - log_width[g]);
    double above = 0.0;
    for (long g = gaps - 1; g >= 0; g--) {
        above += per_gap[g];
        tail[g] = above;
    }
}

/* logits[ids[i]] += strength x log_p[i]: the dynamics lean on one row's velocity tokens
 * (comagen.generation.dynamics.DynamicsPrior.apply). */
void add_scaled(float *logits, const int64_t *ids, long n, double strength, const double *log_p)
{
    for (long i = 0; i < n; i++)
        logits[ids[i]] = (float)(logits[ids[i]] + strength * log_p[i]);
}
