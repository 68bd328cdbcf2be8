/* fidelity.h - `t2i eval fidelity` (fidelity.c): do generated images show the class and
 * colour their captions ask for, judged by the Fashion-MNIST classifier and the
 * foreground colour. */
#ifndef T2I_FIDELITY_H
#define T2I_FIDELITY_H

int eval_cmd_fidelity(int argc, char **argv);

#endif
