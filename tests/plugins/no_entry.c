/* no_entry - test fixture: a shared object that exports a function, but not
 * spoke_plugin_entry, so dlopen succeeds and the symbol lookup fails. */
#include <spoke/plugin.h>

SPOKE_EXPORT const char *no_entry_hello(void) { return "not a plugin"; }
