/* muxpeer.h: `mgrok mux-peer`, a raw smux peer (no control protocol) to
 * check the mux layer against other smux implementations. */
#ifndef MG_MUXPEER_H
#define MG_MUXPEER_H

/*
 * muxpeer_main: argv[0] is "mux-peer".
 *   --listen HOST:PORT   serve every stream the peer opens: smuxpeer's
 *                        request protocol (E/U/D), or with --serve echo a
 *                        raw echo
 *   --connect HOST:PORT  open --streams N streams (8), send --bytes B (1 MiB)
 *                        random bytes on each, check the echo
 *   --smuxver 1|2        the version a connecting peer speaks (2)
 *   --max-time S         give up after S seconds (60)
 * Returns the process exit code.
 */
int muxpeer_main(int argc, char **argv);

#endif
