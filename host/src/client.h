/* client - `spoke connectors ...`: a thin command-line client of the REST
 * API over libcurl, for people without curl habits.
 *
 *   spoke connectors [-c FILE] [--url URL] [--token-file F] COMMAND [ARGS]
 *     list                      every connector with its type and state
 *     status NAME               connector and task states, and the trace when failed
 *     create FILE               FILE.json (a Connect body {"name", "config"}, or a flat
 *                               map) or FILE.yaml (one connectors.yaml entry: name + keys)
 *     config NAME               the config, as YAML that `create` accepts back
 *     pause|resume|stop NAME
 *     restart NAME [--include-tasks] [--only-failed]
 *     delete NAME
 *
 * The server is --url, else the `listeners` of -c FILE's worker section,
 * else http://127.0.0.1:8083. The bearer token is read from --token-file,
 * else from -c FILE's rest.token.file.
 */
#ifndef SPOKE_CLIENT_H
#define SPOKE_CLIENT_H

/*
 * Runs the client. argv[0] is the command word ("connectors"); options and
 * the subcommand follow, e.g. { "connectors", "--url", "http://...", "list" }.
 * Uses getopt_long (resets optind itself). Prints results on stdout and
 * errors (the server's message) on stderr. Returns the process exit code:
 * 0 success, 1 failure (server error, unreachable server, bad file), 2 usage.
 */
int client_main(int argc, char **argv);

#endif
