/* null_entry - test fixture: an entry point that returns NULL instead of a
 * descriptor. */
#include <stddef.h>

#include <spoke/plugin.h>

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return NULL; }
