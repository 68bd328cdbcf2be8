/* trainer.h - the one training loop: flags, run folder, resume, checkpoints, Ctrl-C, metrics.
 *
 * A trainer command fills a t2i_trainer with its own part - a struct of its model, data and
 * options (self) and the hooks below - binds its common flags to the trainer's fields, and
 * hands over:
 *
 *     gan_trainer g = {...defaults...};
 *     t2i_trainer t;
 *     t2i_trainer_init(&t, &gan_ops, &g, "gan");
 *     t.out = "runs/gan", t.ckpt_every = 1000, ...;     (defaults, shown by --help)
 *     t2i_flag flags[] = {..., T2I_TRAIN_SEED(t), T2I_TRAIN_THREADS(t), T2I_TRAIN_OUT(t), ...};
 *     t2i_cmd cmd = {"t2i gan train", ...};
 *     return t2i_trainer_main(&t, &cmd, argc, argv);
 *
 * t2i_trainer_main does, in this order (every hook but step is optional):
 *   1. parse the flags; refuse positional arguments ("gan train: unexpected argument 'x'")
 *      and common flags out of range (below), then check_flags; set the thread count;
 *   2. the run folder's lock (progress.h), when --out exists (else in 4, once it does): a
 *      folder that another process holds is refused ("OUT: in use by another run (PID N)...",
 *      exit 1) before anything in it is read or written;
 *      with --resume: checkpoint.safetensors of --out must exist; load reads the model and
 *      the checkpoint's training state, which the tables state/opts read back (the step,
 *      RNG, seed and options), then check_state may refuse it ("CKPT: message"). Without it
 *      (a trainer with a --resume flag): --out must hold no checkpoint; the RNG is seeded
 *      from --seed;
 *   3. setup: the trainer's own checks, model and data. A trainer that sets default_steps
 *      has its length resolved here: --epochs (times per_epoch / epoch_div, rounded up),
 *      else --steps, else the checkpoint's target, else default_steps; never before the
 *      checkpoint's step. Others set target themselves;
 *   4. the run folder: --out, its samples folder (samples_dir, when `samples` names one),
 *      config.json from the config hook (a new run only);
 *   5. start: optimizers, loader position, buffers, the first lines on stdout;
 *   6. the loop, the single place where a step runs and a checkpoint is written:
 *          step  (one update; the scaffold then counts it: t->step++)
 *          a NaN/Inf loss reported by the step stops the run with exit 1 (no save)
 *          metrics line every log_every steps, progress line
 *          sample every sample_every steps (0: only at the end)
 *          checkpoint every ckpt_every steps, on Ctrl-C and on a --stop-after stop
 *      where "every" also means the last step and the step named phase_end (a trainer's
 *      milestone, e.g. the end of a first phase). Ctrl-C exits 130 after the save;
 *      --stop-after N exits 0 after step N (stop_session: N steps of this session);
 *   7. after the last step: the progress line's end, then finish (the summary line);
 *   8. always: release frees the trainer's part, the scaffold frees its own.
 *
 * Under mpirun (run/dist.h) every rank runs this same sequence with the same flags and
 * seed, so all build the same model; each training step is bracketed by the data-parallel
 * hook (BatchNorm over the global batch, gradients averaged over the ranks by the optimizer
 * steps). Rank 0 alone holds the run folder's lock and writes config.json, metrics,
 * samples, checkpoints and progress; --resume reads the checkpoint on every rank (the run
 * folder must be visible to all of them). A trainer keeps its rows of each global batch
 * (t2i_trainer_split, in setup) and reports losses averaged over the ranks (t2i_dist_mean).
 * Ctrl-C on any rank stops all of them after the same step; a rank that fails ends the job
 * ("t2i: rank R of N: ...", MPI_Abort).
 *
 * Hooks return 0 on success, else the command's exit status (1: a runtime error, 2: a bad
 * flag) after printing the message; load and the state tables set t2i_error_set instead.
 */
#ifndef T2I_TRAINER_H
#define T2I_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "args.h"
#include "ckpt.h"
#include "progress.h"
#include "rng.h"

typedef struct t2i_trainer t2i_trainer;

/* What a step returns. */
enum { T2I_STEP_OK = 0, T2I_STEP_FAILED = 1 /* message printed */, T2I_STEP_NONFINITE = 2 /* t2i_trainer_finite */ };

typedef struct {
    int (*check_flags)(void *self, t2i_trainer *t);
    int (*load)(void *self, const char *path, char **state_json); /* --resume: the model, and its "state" */
    int (*check_state)(void *self, t2i_trainer *t);                /* after the tables read the state */
    int (*setup)(void *self, t2i_trainer *t);
    char *(*config)(void *self, t2i_trainer *t); /* config.json text (malloc'd) */
    int (*start)(void *self, t2i_trainer *t);
    int (*step)(void *self, t2i_trainer *t);
    /* the metrics line (a JSON object) of the step just done into buf; 0: nothing to log */
    int (*metrics)(void *self, t2i_trainer *t, char *buf, size_t n);
    /* the progress line's text; last: at the end of the run */
    void (*progress)(void *self, t2i_trainer *t, int last, char *buf, size_t n);
    int (*sample)(void *self, t2i_trainer *t);
    void (*sync)(void *self); /* copy live counters (loader position, optimizer steps) into the state */
    int (*save)(void *self, const char *path, const char *state_json); /* state_json: NULL without tables */
    void (*finish)(void *self, t2i_trainer *t);
    void (*release)(void *self);
} t2i_trainer_ops;

struct t2i_trainer {
    const t2i_trainer_ops *ops;
    void *self;
    const char *label; /* progress label: "gan" */
    const char *name;  /* "gan train", from the command's name */
    t2i_cmd *cmd;      /* for t2i_flag_given */

    /* common flags (the trainer's defaults go here before parsing) */
    const char *out;
    int resume, threads;
    long seed_arg;
    long steps;       /* --steps; with default_steps: 0 = as planned */
    float epochs;     /* --epochs */
    int log_every, sample_every, ckpt_every;
    long stop_after;  /* 0: run to the end */
    int stop_session; /* --stop-after counts the steps of this session, not global steps */
    /* their limits: --ckpt-every, --log-every and the sample flag within [1 (sample: sample_min),
     * every_max]; --steps within [0, steps_max] (when steps_max > 0); --epochs within [0, 1e6];
     * --stop-after within [0, stop_after_max] (when stop_after_max > 0) */
    long every_max, steps_max, stop_after_max;
    int sample_min;

    /* the training state every trainer has: checkpointed by the tables below */
    long step, target; /* steps done, steps planned */
    t2i_rng rng;
    uint64_t seed;
    const nn_field *state, *opts; /* checkpoint "state" fields (top level, "train") */
    int nstate, nopts;

    /* planning (setup): steps per epoch and the default length; 0: the trainer sets target */
    long per_epoch, default_steps;
    int epoch_div;
    long phase_end; /* a step at which metrics, samples and a checkpoint are due as at the end */
    const char *samples; /* name of the samples folder in the run, or NULL */

    /* filled by the scaffold */
    char *ckpt_path, *samples_dir;
    t2i_run run;
    long start_step;     /* step when this session started */
    double step_seconds; /* time of the last step */
    double elapsed;      /* seconds of this session's loop (for finish) */
    const char *bad_loss;
    double bad_value;

    /* data-parallel runs (run/dist.h): this process's rank among size; its rows [lo, hi) of
     * each global batch (t2i_trainer_split; 0 and the batch in one process) */
    int rank, size;
    int lo, hi;
};

/* The flags every trainer spells the same way. */
#define T2I_TRAIN_SEED(t) {"--seed", T2I_LONG, &(t).seed_arg, "random seed"}
#define T2I_TRAIN_THREADS(t) {"--threads", T2I_INT, &(t).threads, "threads (0 = all cores)"}
#define T2I_TRAIN_OUT(t) {"--out", T2I_STR, &(t).out, "run folder"}
#define T2I_TRAIN_RESUME(t) {"--resume", T2I_BOOL, &(t).resume, "continue the run in --out from its checkpoint"}
#define T2I_TRAIN_CKPT_EVERY(t) {"--ckpt-every", T2I_INT, &(t).ckpt_every, "save a checkpoint every N steps"}
#define T2I_TRAIN_LOG_EVERY(t) {"--log-every", T2I_INT, &(t).log_every, "append to metrics.jsonl every N steps"}
/* The usual tail of a trainer's flag table, in this order. */
#define T2I_TRAIN_FLAGS(t)                                                                                        \
    T2I_TRAIN_CKPT_EVERY(t), T2I_TRAIN_LOG_EVERY(t), T2I_TRAIN_SEED(t), T2I_TRAIN_THREADS(t), T2I_TRAIN_OUT(t), \
        T2I_TRAIN_RESUME(t)

void t2i_trainer_init(t2i_trainer *t, const t2i_trainer_ops *ops, void *self, const char *label);
/* Runs the command; returns its exit status. */
int t2i_trainer_main(t2i_trainer *t, t2i_cmd *cmd, int argc, char **argv);

/* In setup: this rank's rows [t->lo, t->hi) of a global batch of `batch` items (flag names it
 * in the message). The batch must split evenly over the ranks, so that each rank's mean loss
 * weighs the same (refused with exit 2 otherwise). */
int t2i_trainer_split(t2i_trainer *t, const char *flag, int batch);

/* In a step: 0 when the loss x is finite; else 1, remembering it (name: which loss, "" when the
 * trainer has one) for the scaffold's message. */
int t2i_trainer_nonfinite(t2i_trainer *t, const char *name, double x);
/* The options table as a JSON object's text (config.json's "train"), malloc'd. */
char *t2i_trainer_opts_json(const t2i_trainer *t);
/* config.json's text {"model":MODEL,"train":<opts>,"steps":STEPS<mid>,"threads":N<tail>}, malloc'd;
 * model (a malloc'd JSON text) is freed; mid and tail (",\"key\":value" pairs) may be NULL. */
char *t2i_trainer_config(const t2i_trainer *t, char *model, long steps, const char *mid, const char *tail);
/* The tail ",\"init\":\"PATH\"" (PATH escaped as a JSON string) of a run started from a
 * checkpoint (--init), malloc'd; NULL when path is NULL. */
char *t2i_trainer_init_tail(const char *path);
/* dir/samples/step_NNNNNN.png and dir/samples/latest.png of the current step (malloc'd). */
char *t2i_trainer_sample_path(const t2i_trainer *t);
char *t2i_trainer_latest_path(const t2i_trainer *t);

#endif
