/* bad_magic - test fixture: a descriptor whose header has the wrong magic.
 * Everything else is a valid transform, so the magic is the only reason the
 * host can give for refusing it. */
#include <spoke/plugin.h>

static int bad_magic_init(const struct spoke_host_api *api, struct spoke_instance *inst,
                          const struct spoke_config *cfg, void **st,
                          char *errstr, size_t errstr_size)
{
    (void)api; (void)inst; (void)cfg; (void)errstr; (void)errstr_size;
    *st = NULL;
    return SPOKE_OK;
}

static int bad_magic_process(void *st, struct spoke_record *rec, char *errstr, size_t errstr_size)
{
    (void)st; (void)rec; (void)errstr; (void)errstr_size;
    return SPOKE_OK;
}

static void bad_magic_destroy(void *st) { (void)st; }

static const struct spoke_plugin bad_magic = {
    .hdr         = { 0xdeadbeefu, SPOKE_ABI_VERSION, (uint32_t)sizeof(struct spoke_plugin), 0 },
    .name        = "bad_magic",
    .kind        = SPOKE_KIND_TRANSFORM,
    .version     = "0.1.0",
    .description = "Test fixture: wrong magic in the header",
    .init        = bad_magic_init,
    .process     = bad_magic_process,
    .destroy     = bad_magic_destroy,
};

SPOKE_EXPORT const struct spoke_plugin *spoke_plugin_entry(void) { return &bad_magic; }
