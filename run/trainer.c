/* trainer.c - the training loop's scaffold; see trainer.h. */
#include "trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "dist.h"

void t2i_trainer_init(t2i_trainer *t, const t2i_trainer_ops *ops, void *self, const char *label) {
    memset(t, 0, sizeof *t);
    t->ops = ops;
    t->self = self;
    t->label = label;
    t->epoch_div = 1;
    t->sample_min = 1;
    t->size = 1;
}

int t2i_trainer_nonfinite(t2i_trainer *t, const char *name, double x) {
    if (isfinite(x)) return 0;
    t->bad_loss = name;
    t->bad_value = x;
    return 1;
}

int t2i_trainer_split(t2i_trainer *t, const char *flag, int batch) {
    if (batch % t->size != 0)
        return t2i_fail("%s %d does not split evenly over %d ranks (use a multiple of %d)", flag, batch, t->size,
                        t->size),
               2;
    t2i_dist_slice(batch, &t->lo, &t->hi);
    return 0;
}

char *t2i_trainer_opts_json(const t2i_trainer *t) { return nn_fields_to_json(t->opts, t->nopts); }

char *t2i_trainer_config(const t2i_trainer *t, char *model, long steps, const char *mid, const char *tail) {
    char *oj = t2i_trainer_opts_json(t);
    char ranks[32] = "";
    if (t->size > 1) snprintf(ranks, sizeof ranks, ",\"ranks\":%d", t->size);
    char *full = t2i_asprintf("{\"model\":%s,\"train\":%s,\"steps\":%ld%s,\"threads\":%d%s%s}", model, oj, steps,
                              mid ? mid : "", t2i_get_threads(), ranks, tail ? tail : "");
    free(model), free(oj);
    return full;
}

char *t2i_trainer_init_tail(const char *path) {
    if (!path) return NULL;
    cJSON *j = cJSON_CreateString(path); /* a path: escaped by cJSON */
    char *s = cJSON_PrintUnformatted(j);
    char *tail = t2i_asprintf(",\"init\":%s", s);
    cJSON_free(s);
    cJSON_Delete(j);
    return tail;
}

char *t2i_trainer_sample_path(const t2i_trainer *t) { return t2i_asprintf("%s/step_%06ld.png", t->samples_dir, t->step); }

char *t2i_trainer_latest_path(const t2i_trainer *t) { return t2i_asprintf("%s/latest.png", t->samples_dir); }

/* Is the flag bound to dst among the command's flags? Its name, or NULL. */
static const char *flag_of(const t2i_cmd *cmd, const void *dst) {
    for (int i = 0; i < cmd->nflags; i++)
        if (cmd->flags[i].dst == dst) return cmd->flags[i].name;
    return NULL;
}

static int check_common(const t2i_trainer *t) {
    const t2i_cmd *c = t->cmd;
    const char *f;
    if ((f = flag_of(c, &t->sample_every)) && t2i_check_range_i(f, t->sample_every, t->sample_min, t->every_max)) return -1;
    if ((f = flag_of(c, &t->ckpt_every)) && t2i_check_range_i(f, t->ckpt_every, 1, t->every_max)) return -1;
    if ((f = flag_of(c, &t->log_every)) && t2i_check_range_i(f, t->log_every, 1, t->every_max)) return -1;
    if (t->stop_after_max > 0 && (f = flag_of(c, &t->stop_after)) &&
        t2i_check_range_i(f, t->stop_after, 0, t->stop_after_max))
        return -1;
    if (t->steps_max > 0 && (f = flag_of(c, &t->steps)) && t2i_check_range_i(f, t->steps, 0, t->steps_max)) return -1;
    if ((f = flag_of(c, &t->epochs)) && t2i_check_range_f(f, t->epochs, 0, 1e6)) return -1;
    return 0;
}

/* --resume: the model and its training state from the run's checkpoint. */
static int resume(t2i_trainer *t) {
    const char *path = t->ckpt_path;
    if (!t2i_path_exists(path)) return t2i_fail("%s: no checkpoint to resume from", path);
    char *sj = NULL;
    if (t->ops->load(t->self, path, &sj) != 0) return free(sj), t2i_fail_err();
    int rc = 0;
    if (!sj) rc = t2i_fail("%s: no training state in its metadata", path);
    else if (nn_state_from_json(sj, t->state, t->nstate, t->opts, t->nopts) != 0 ||
             (t->ops->check_state && t->ops->check_state(t->self, t) != 0))
        rc = t2i_fail("%s: %s", path, t2i_error_msg());
    free(sj);
    return rc;
}

/* The run's length from --epochs / --steps / the checkpoint's plan. */
static int plan(t2i_trainer *t) {
    if (t->epochs > 0) t->steps = (long)ceil(t->epochs * t->per_epoch / t->epoch_div);
    if (t->steps <= 0) t->steps = t->resume && t->target > 0 ? t->target : t->default_steps;
    if (t->steps < t->step) return t2i_fail("--steps %ld is before the checkpoint's step %ld", t->steps, t->step);
    t->target = t->steps;
    return 0;
}

/* A new run (of a trainer with --resume) must not overwrite one in --out. */
static int check_new(const t2i_trainer *t) {
    if (flag_of(t->cmd, &t->resume) && t2i_path_exists(t->ckpt_path))
        return t2i_fail("%s already holds a run (%s); pass --resume to continue it or choose another --out", t->out,
                        t->ckpt_path);
    return 0;
}

static int open_run(t2i_trainer *t) {
    if (!t->run.locked) {
        /* --out did not exist at the start: locked now that it does, before anything is written
         * in it; another run may have made it and saved a checkpoint since check_new */
        if (t2i_mkdirs(t->out) != 0 || t2i_run_lock(&t->run, t->out) != 0) return t2i_fail_err();
        if (!t->resume && check_new(t) != 0) return 1;
    }
    if (t2i_run_open(&t->run, t->out) != 0) return t2i_fail_err();
    if (t->samples) {
        t->samples_dir = t2i_run_path(&t->run, t->samples);
        if (t2i_mkdirs(t->samples_dir) != 0) return t2i_fail_err();
    }
    if (t->resume || !t->ops->config) return 0;
    char *cj = t->ops->config(t->self, t);
    int rc = t2i_run_write_config(&t->run, cj);
    free(cj);
    return rc ? t2i_fail_err() : 0;
}

static int save(t2i_trainer *t) {
    if (t->ops->sync) t->ops->sync(t->self);
    char *sj = t->nstate + t->nopts > 0 ? nn_state_to_json(t->state, t->nstate, t->opts, t->nopts) : NULL;
    int rc = t->ops->save(t->self, t->ckpt_path, sj);
    free(sj);
    return rc ? t2i_fail_err() : 0;
}

/* The loop: one step, its metrics and progress, then what is due after it. */
static int loop(t2i_trainer *t) {
    const t2i_trainer_ops *ops = t->ops;
    const char *resume_hint = flag_of(t->cmd, &t->resume) ? " (continue with --resume)" : "";
    char text[512];
    t2i_install_sigint();
    t2i_progress prog;
    int r0 = t->rank == 0; /* the one rank that reports and writes */
    if (r0) t2i_progress_start(&prog, t->label, t->step, t->target);
    t->start_step = t->step;
    double t_start = t2i_now();
    long stop_at = t->stop_after <= 0 ? -1 : t->stop_session ? t->start_step + t->stop_after : t->stop_after;
    while (t->step < t->target) {
        double t0 = t2i_now();
        /* the mean over the global batch: each rank's loss is the mean over its equal slice */
        t2i_dist_step_begin(t2i_dist_broken("grad") || t2i_dist_broken("scale") ? 1.0f : 1.0f / (float)t->size);
        int src = ops->step(t->self, t);
        t2i_dist_step_end();
        t->step++;
        t->step_seconds = t2i_now() - t0;
        /* a signal that reached one rank stops them all after this step */
        if (t->size > 1 && t2i_dist_any(t2i_interrupted) && !t2i_interrupted) t2i_interrupted = SIGINT;
        if (src == T2I_STEP_NONFINITE)
            return t2i_fail("step %ld: the %s%sloss is %s; stopping (the last checkpoint, if any, is %s; try a lower "
                            "learning rate)",
                            t->step, t->bad_loss, *t->bad_loss ? " " : "", isnan(t->bad_value) ? "NaN" : "Inf",
                            t->ckpt_path);
        if (src != T2I_STEP_OK) return 1;
        int last = t->step == t->target, mark = last || t->step == t->phase_end;
        int stop = t2i_interrupted || (stop_at >= 0 && t->step >= stop_at && !last);
        if (!r0) {
            if (t2i_interrupted) return 128 + (int)t2i_interrupted;
            if (stop) return 0;
            continue;
        }
        if (ops->metrics && (t->step % t->log_every == 0 || mark) && ops->metrics(t->self, t, text, sizeof text) > 0)
            t2i_run_metrics(&t->run, text);
        text[0] = 0;
        if (ops->progress) ops->progress(t->self, t, 0, text, sizeof text);
        t2i_progress_update(&prog, t->step, "%s", text);
        if (ops->sample && ((t->sample_every > 0 && t->step % t->sample_every == 0) || mark)) {
            int rc = ops->sample(t->self, t);
            if (rc) return rc;
        }
        if ((t->step % t->ckpt_every == 0 || mark || stop) && save(t) != 0) return 1;
        if (t2i_interrupted) {
            t2i_progress_end(&prog, t->step, "interrupted");
            fprintf(stderr, "t2i: interrupted at step %ld; checkpoint saved to %s%s\n", t->step, t->ckpt_path,
                    resume_hint);
            return 128 + (int)t2i_interrupted; /* 130 for Ctrl-C, 143 for SIGTERM */
        }
        if (stop) {
            /* two wordings kept from before the scaffold: a session's slice (clip) reports on stdout */
            t2i_progress_end(&prog, t->step, t->stop_session ? "paused" : "stopped");
            if (t->stop_session)
                printf("%s: stopped after %ld steps as asked (step %ld of %ld); continue with --resume\n", t->name,
                       t->stop_after, t->step, t->target);
            else
                fprintf(stderr, "t2i: stopped at step %ld; checkpoint saved to %s%s\n", t->step, t->ckpt_path,
                        resume_hint);
            return 0;
        }
    }
    if (!r0) return 0;
    text[0] = 0;
    if (ops->progress) ops->progress(t->self, t, 1, text, sizeof text);
    t2i_progress_end(&prog, t->step, "%s", text);
    t->elapsed = t2i_now() - t_start;
    if (ops->finish) ops->finish(t->self, t);
    if (t->size > 1) {
        double cs, cb, cn;
        long n = t->step - t->start_step;
        t2i_dist_comm(&cs, &cb, &cn);
        if (n > 0)
            printf("%s: %d ranks; rank 0 spent %.1f ms a step in communication (%.0f%% of the loop, waiting for "
                   "slower ranks included), %.3f MB a step summed or gathered in %.0f collectives\n",
                   t->name, t->size, cs / n * 1e3, t->elapsed > 0 ? 100.0 * cs / t->elapsed : 0.0, cb / n / 1e6,
                   cn / n);
    }
    return 0;
}

static int run(t2i_trainer *t, int argc, char **argv) {
    const t2i_trainer_ops *ops = t->ops;
    t2i_cmd *cmd = t->cmd;
    int prc = t2i_parse(cmd, argc, argv);
    if (prc != T2I_PARSE_OK) return prc == T2I_PARSE_HELP ? 0 : 2;
    if (cmd->npos) return t2i_fail("%s: unexpected argument '%s'", t->name, cmd->pos[0]), 2;
    if (check_common(t) != 0) return 2;
    int rc = ops->check_flags ? ops->check_flags(t->self, t) : 0;
    if (rc) return rc;
    t2i_set_threads(t->threads);

    /* one process per run folder, from before its checkpoint is read to the end (open_run
     * takes the lock of a folder that does not exist yet once it makes it) */
    int r0 = t->rank == 0;
    if (r0 && t2i_is_dir(t->out) && t2i_run_lock(&t->run, t->out) != 0) return t2i_fail_err();
    t->ckpt_path = t2i_asprintf("%s/checkpoint.safetensors", t->out);
    if (t->resume) {
        if ((rc = resume(t)) != 0) return rc;
    } else {
        if ((rc = check_new(t)) != 0) return rc;
        t->seed = (uint64_t)t->seed_arg;
        t2i_rng_seed(&t->rng, t->seed);
    }
    if (ops->setup && (rc = ops->setup(t->self, t)) != 0) return rc;
    if (t->default_steps > 0 && (rc = plan(t)) != 0) return rc;
    if (r0 && (rc = open_run(t)) != 0) return rc;
    if (ops->start && (rc = ops->start(t->self, t)) != 0) return rc;
    fflush(stdout);
    return loop(t);
}

int t2i_trainer_main(t2i_trainer *t, t2i_cmd *cmd, int argc, char **argv) {
    t->cmd = cmd;
    t->name = strncmp(cmd->name, "t2i ", 4) == 0 ? cmd->name + 4 : cmd->name;
    if (t2i_dist_init() != 0) return 1;
    t->rank = t2i_dist_rank(), t->size = t2i_dist_size();
    int rc = run(t, argc, argv);
    if (t->ops->release) t->ops->release(t->self);
    if (t->run.dir) t2i_run_close(&t->run); /* also releases the lock */
    free(t->samples_dir);
    free(t->ckpt_path);
    /* every rank ends a run alike: done (0), stopped by a signal (128 + s) or a bad flag (2),
     * which all ranks meet at the same point; any other failure is this rank's alone, and the
     * others may wait for it in a collective: it ends the job */
    if (t->size > 1 && rc != 0 && rc != 2 && rc < 128) t2i_dist_abort(rc, "stopped (exit status %d); ending the job", rc);
    t2i_dist_finalize();
    return rc;
}
