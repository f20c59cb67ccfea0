/* fakactl -- the operator's command-line tool for a faka fleet: submit and
 * inspect orders, retry and resolve them, look after the dead letters and
 * the stock, watch the fleet (stats, top). Everything is in common/ctl*.c;
 * see `fakactl --help` for the commands and the exit codes. */
#include "ctl.h"

int main(int argc, char **argv) { return fk_ctl_main(argc, argv); }
