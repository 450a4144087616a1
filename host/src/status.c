#include "status.h"

#include "spoke/plugin.h"

const char *status_text(int status)
{
    switch (status) {
    case SPOKE_OK: return "success";
    case SPOKE_RETRY: return "transient failure, retry later";
    case SPOKE_DROP: return "record dropped";
    case SPOKE_PENDING: return "delivery under way";
    case SPOKE_ERR: return "error";
    case SPOKE_ERR_INVALID: return "invalid argument or input";
    case SPOKE_ERR_NOMEM: return "out of memory";
    case SPOKE_ERR_IO: return "I/O error";
    case SPOKE_ERR_PARSE: return "malformed input";
    case SPOKE_ERR_NOTFOUND: return "not found";
    case SPOKE_ERR_STATE: return "invalid in the current state";
    case SPOKE_ERR_TIMEOUT: return "timed out";
    case SPOKE_ERR_STOPPED: return "stopped";
    case SPOKE_ERR_TYPE: return "wrong type";
    case SPOKE_ERR_RANGE: return "out of range";
    }
    return "unknown status";
}
