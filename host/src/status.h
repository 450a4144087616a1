/* status - spoke_status codes as text. */
#ifndef SPOKE_STATUS_H
#define SPOKE_STATUS_H

/* Text for a status code; static storage, never NULL. */
const char *status_text(int status);

#endif
