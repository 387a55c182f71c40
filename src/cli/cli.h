/* cli.h: the subcommands' front ends (options, output, signals), called
 * by main(). Each takes argv[0] = the subcommand and returns the exit
 * code. */
#ifndef MG_CLI_H
#define MG_CLI_H

int cli_certs(int argc, char **argv);    /* certs_cmd.c */
int cli_connect(int argc, char **argv);  /* connect_cmd.c */
int cli_muxpeer(int argc, char **argv);  /* muxpeer_cmd.c */
int cli_config(int argc, char **argv);   /* config_cmd.c */
int cli_status(int argc, char **argv);   /* status_cmd.c */
int cli_token(int argc, char **argv);    /* token_cmd.c */

struct conf_diag;
/* cli_print_diag: a load's errors and warnings on stderr, "mgrok: ..." */
void cli_print_diag(const struct conf_diag *d); /* config_cmd.c */

#endif
