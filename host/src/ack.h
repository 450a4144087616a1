/* ack - delivery tracking and the offset store.
 *
 * Every record a source emits gets an origin: an entry in its source's
 * tracker holding the record's position and a count of units still in
 * flight. Each record derived from it (a transform's output, a fan-out copy)
 * holds one unit. A unit ends delivered (a sink flushed it, a transform
 * dropped it, nobody subscribes to its topic) or abandoned (freed without
 * delivery: failure, forced shutdown). The tracker commits a position only
 * when it and every earlier entry of the source ended delivered: offsets
 * never pass a record that is not delivered.
 */
#ifndef SPOKE_ACK_H
#define SPOKE_ACK_H

#include <stddef.h>
#include <stdint.h>

struct origin;
struct tracker;
struct offset_store;

/* ---- tracker (one per source connector) ---- */

/* A tracker for one source connector. The runtime reads committed positions
 * with tracker_committed() from its own thread, so plugin callbacks never run
 * on the thread that happened to complete a record. NULL on OOM. */
struct tracker *tracker_new(const char *connector);
/* A new entry with one unit held, at the end of the tracker's order.
 * partition must be interned; born_ns: when the source poll that produced
 * the record started (monotonic ns), for end-to-end latency. NULL on OOM.
 * One thread at a time appends to a tracker (the source's task thread; a
 * handover to another thread needs a happens-before, e.g. a join): an
 * append takes no lock, and allocates once per chunk of entries. */
struct origin *tracker_add(struct tracker *t, const char *partition, int64_t offset,
                           int64_t born_ns);
/* Replays: a source task that starts again (a restart, a FAILED consumer's
 * replay, a new config) resumes from its committed offsets, so it emits
 * again what its previous run emitted past them. Several entries may share
 * an offset (a source that gives a whole response one position): an
 * entry's sub counts those before it in its partition at the same offset,
 * so (offset, sub) orders them. Entries added at or before (upto, sub) in
 * partition are marked replayed (origin_replayed), until one passes it.
 * Appender side: call before the appender starts. */
void tracker_replay_set(struct tracker *t, const char *partition, int64_t upto, uint32_t sub);
/* tracker_replay_set for the last position src's appender added in each
 * partition, and src's own marks not passed yet (dst may be src); src's
 * next run counts subs afresh. src's appender must have stopped. */
void tracker_replay_inherit(struct tracker *dst, struct tracker *src);
/* Drops the owner's reference; the tracker lives on until no origin uses it. */
void tracker_release(struct tracker *t);
/* Entries not yet committed (in flight), and the records holds hold. */
size_t tracker_inflight(struct tracker *t);
/* True when some unit was abandoned: nothing past it will commit. */
int tracker_blocked(struct tracker *t);
/* Increments each time a committed position advances (cheap change test). */
uint64_t tracker_generation(struct tracker *t);
/* Snapshot of the committed positions: calls fn for each partition, under
 * the tracker's lock (fn must not call back into the tracker). */
void tracker_committed(struct tracker *t,
                       void (*fn)(void *ctx, const char *partition, int64_t offset),
                       void *ctx);
/* Blocks until nothing is in flight and no hold stands, or the deadline
 * (mono ms) passes. Returns 1 when drained. */
int tracker_wait_idle(struct tracker *t, int64_t deadline_ms);
/* Blocks until every record was delivered, abandoned or taken into a
 * hold (the holds may stand), or the deadline passes. 1 when so. */
int tracker_wait_settled(struct tracker *t, int64_t deadline_ms);

/* ---- holds: a stateful transform's claim on commits ----
 *
 * A stateful transform folds records into its state: they are delivered
 * only once a snapshot of that state is durable. Holding each record's
 * unit until then would keep an entry per record (its memory growing
 * with the rate times the snapshot interval). A hold instead stands for
 * all the records a transform absorbed from one tracker since its last
 * snapshot: their units end at once, and the tracker commits no position
 * at or after the first entry the hold covers until the hold ends. It
 * commits them when the hold ends ok (the snapshot is durable), and blocks
 * as for an abandoned unit when it does not. A tracker with a hold is not
 * idle (tracker_wait_idle) and counts the held records in flight.
 * Holds are used by one thread (their transform's task). */
struct ack_hold;
/* A hold on o's tracker covering o and every entry after it; the caller
 * holds a unit of o. NULL on OOM. */
struct ack_hold *ack_hold_new(struct origin *o);
/* Extends h back to o when o comes before the first entry h covers. o is
 * of h's tracker; the caller holds a unit of o. */
void ack_hold_cover(struct ack_hold *h, const struct origin *o);
/* n more records are held by h (tracker_inflight counts them). */
void ack_hold_count(struct ack_hold *h, size_t n);
/* Ends h and frees it: ok, the positions it held back commit; else the
 * tracker blocks (nothing at or after h's first entry ever commits). */
void ack_hold_end(struct ack_hold *h, int ok);
/* The tracker of an origin (to find the hold that covers it). */
struct tracker *origin_tracker(const struct origin *o);
/* The tracker of a hold. */
struct tracker *ack_hold_tracker(const struct ack_hold *h);

/* ---- origin units ---- */
void origin_hold(struct origin *o);
/* Ends one unit: delivered (ok = 1) or abandoned (ok = 0). */
void origin_done(struct origin *o, int ok);
/* origin_done(os[i], 1) for each of os[0, n) (NULLs skipped), taking each
 * tracker's lock once per run of origins of that tracker. Reuses os. */
void origins_done(struct origin **os, size_t n);
/* Where the origin comes from: the source connector's name and partition
 * (both interned; partition NULL when the source set no position), the
 * offset, its sub (origin_sub) and whether it is a replay (origin_replayed),
 * in one call for the transforms' hot path. Valid while the caller holds a
 * unit of o. */
void origin_position(const struct origin *o, const char **source, const char **partition,
                     int64_t *offset, uint32_t *sub, int *replayed);
/* Whether an earlier run of o's source emitted o's position already
 * (tracker_replay_set). */
int origin_replayed(const struct origin *o);
/* The entries before o in its partition at o's offset, in its run. */
uint32_t origin_sub(const struct origin *o);
/* born_ns given to tracker_add. */
int64_t origin_born_ns(const struct origin *o);

/* ---- offset store: state.dir/offsets.json ---- */

/* Loads (a missing file is empty). NULL + err on a corrupt file. */
struct offset_store *offsets_open(const char *path, char *err, size_t errsize);
void offsets_close(struct offset_store *os);
int offsets_get(struct offset_store *os, const char *connector, const char *partition,
                int64_t *offset);
size_t offsets_count(struct offset_store *os, const char *connector);
/* The i-th partition of a connector; *partition is interned. */
int offsets_at(struct offset_store *os, const char *connector, size_t i,
               const char **partition, int64_t *offset);
void offsets_set(struct offset_store *os, const char *connector, const char *partition,
                 int64_t offset);
void offsets_forget(struct offset_store *os, const char *connector);
/* Removes one partition of a connector. */
void offsets_remove(struct offset_store *os, const char *connector, const char *partition);
/* Writes the file atomically (temp, fsync, rename, fsync dir) if changed.
 * 0 or -1 with err. */
int offsets_flush(struct offset_store *os, char *err, size_t errsize);

#endif
