// SPDX-License-Identifier: MIT
/*
 * The RabbitMQ source: a producer stage fed by a connector thread that owns
 * the connection. The thread reads deliveries in batches into one block of
 * memory per batch, casts each batch to the stage (which emits it), and
 * settles what the acknowledger hands back: acks gathered into one
 * `multiple` ack per contiguous run of delivery tags, failures retried or
 * dead-lettered by the broker's x-death count, cancelled messages
 * requeued. A lost connection is reopened with backoff; messages settled
 * after their connection was lost are only freed (the broker redelivers
 * them).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "amqp_internal.h"

/* Deliveries read per batch (one allocation, one cast). */
#define READ_BATCH 256
#define DEFAULT_MAX_RETRIES 3
#define DEFAULT_RETRY_DELAY_MS 1000
#define DEFAULT_DRAIN_TIMEOUT_MS 30000
/* How long the thread sleeps when nothing wakes it (it re-checks its
 * flags then). */
#define IDLE_MS 100
/* The longest an ack waits for others to share its frame. */
#define ACK_DELAY_MS 5
/* A message's frames arrive together; this bounds the wait for the rest
 * of one whose first frame was read. */
#define FRAME_WAIT_MS 100
#define MAX_PREFETCH 65535

typedef struct slab slab;

typedef struct delivery {
	gs_message m;
	gs_amqp_meta meta;
	slab *slab;
	uint32_t epoch; /* the connection it came on */
} delivery;

/* One batch of deliveries and their bytes; freed by the connector thread
 * when its last delivery is settled. */
struct slab {
	size_t refs;
	delivery d[];
};

typedef enum act_kind { ACT_ACK, ACT_FAIL, ACT_CANCEL } act_kind;

typedef struct action {
	delivery *d;
	act_kind kind;
} action;

/* What the connector casts to the stage. */
typedef struct cast_batch {
	size_t n;
	void *msgs[];
} cast_batch;

/* Tag states in the settle ring. */
enum { TAG_OPEN = 0, TAG_ACK, TAG_DONE };

typedef struct counts {
	_Atomic uint64_t delivered, acked, retried, dead_lettered, requeued,
		rejected, deduplicated, stale, connects, outstanding;
} counts;

struct gs_amqp_source {
	gs_amqp_source_opts o;
	gs__amqp_conf conf;
	char *queue, *retry_queue, *dead_queue;
	gs_amqp_binding *bindings;
	gs_stage *stage;
	pthread_t thread;
	bool thread_started;
	char thread_name[16]; /* written by on_init before the thread starts */
	int efd;              /* wakes the connector */

	pthread_mutex_t lock; /* guards the actions */
	action *actions;
	size_t n_actions, cap_actions;

	_Atomic bool stopping;       /* the stage has finished */
	_Atomic bool freeing;        /* gs_amqp_source_free was called */
	_Atomic uint64_t demand_max; /* the prefetch the demand asks for */
	uint64_t demand_total, emitted_total; /* stage thread's */

	/* Connector thread's. */
	amqp_connection_state_t conn;
	uint32_t epoch;
	unsigned failures;
	size_t qos;
	bool consuming, gave_up;
	uint64_t outstanding;
	uint64_t low, high; /* tags: lowest not acked at the broker, last */
	uint64_t acks_due;  /* when held acks must go out (ms); 0: none */
	unsigned char *tags;
	size_t tags_cap; /* a power of two */
	action *work;    /* the actions being settled */
	size_t cap_work;
	counts c;
};

static const gs_acknowledger amqp_acknowledger;

static void wake(gs_amqp_source *s)
{
	uint64_t one = 1;
	ssize_t r = write(s->efd, &one, sizeof one);
	(void)r; /* a full counter already wakes it */
}

static void bump(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* Queues settlements, one lock per call. On no memory the
 * messages are settled as cancelled, one action at a time... which needs
 * memory too: so the queue is grown ahead, see reserve_actions. */
static void post(gs_amqp_source *s, gs_message **msgs, size_t n, act_kind k)
{
	if (!n)
		return;
	pthread_mutex_lock(&s->lock);
	if (s->n_actions + n > s->cap_actions) {
		size_t cap = s->cap_actions ? s->cap_actions : 256;
		while (cap < s->n_actions + n)
			cap *= 2;
		action *v = realloc(s->actions, cap * sizeof *v);
		if (!v) {
			/* Keep the messages (never lose them): wait for the
			 * connector to take the queue and retry. */
			pthread_mutex_unlock(&s->lock);
			wake(s);
			struct timespec ms = { 0, 1000000 };
			nanosleep(&ms, NULL);
			post(s, msgs, n, k);
			return;
		}
		s->actions = v;
		s->cap_actions = cap;
	}
	/* The connector takes the whole queue at once: only the post that
	 * finds it empty needs to wake it (one system call per round of
	 * settlements, not per acknowledger call). */
	bool was_empty = !s->n_actions;
	for (size_t i = 0; i < n; i++) {
		delivery *d = (delivery *)msgs[i];
		act_kind kind = k;
		if (kind == ACT_FAIL && d->m.status == GS_ECANCELED)
			kind = ACT_CANCEL;
		s->actions[s->n_actions++] = (action){ d, kind };
	}
	pthread_mutex_unlock(&s->lock);
	if (was_empty)
		wake(s);
}

static void amqp_ack(void *ack_ref, gs_message **ok, size_t n_ok,
		     gs_message **failed, size_t n_failed)
{
	post(ack_ref, ok, n_ok, ACT_ACK);
	post(ack_ref, failed, n_failed, ACT_FAIL);
}

static const gs_acknowledger amqp_acknowledger = { .ack = amqp_ack };

/* --- the stage -------------------------------------------------------- */

static void *connector_main(void *arg);

static int on_init(void *state, gs_stage *stage)
{
	gs_amqp_source *s = state;
	/* A new thread takes its creator's name (a worker's): say whose
	 * connection it is instead, in the 15 characters allowed. */
	snprintf(s->thread_name, sizeof s->thread_name, "%.12s-io",
		 gs_stage_name(stage));
	if (pthread_create(&s->thread, NULL, connector_main, s))
		return GS_ESPAWN;
	s->thread_started = true;
	return GS_OK;
}

static int on_demand(void *state, gs_stage *stage, size_t demand)
{
	(void)stage;
	gs_amqp_source *s = state;
	s->demand_total += demand;
	uint64_t pending = s->demand_total - s->emitted_total;
	if (pending >
	    atomic_load_explicit(&s->demand_max, memory_order_relaxed)) {
		atomic_store_explicit(&s->demand_max, pending,
				      memory_order_relaxed);
		wake(s);
	}
	return GS_OK;
}

static int on_cast(void *state, gs_stage *stage, void *msg)
{
	gs_amqp_source *s = state;
	cast_batch *b = msg;
	s->emitted_total += b->n;
	if (s->emitted_total > s->demand_total)
		s->demand_total = s->emitted_total;
	if (gs_emit(stage, b->msgs, b->n)) {
		/* Draining: the stage takes nothing new. */
		for (size_t i = 0; i < b->n; i++)
			((gs_message *)b->msgs[i])->status = GS_ECANCELED;
		post(s, (gs_message **)b->msgs, b->n, ACT_FAIL);
	}
	free(b);
	return GS_OK;
}

static void on_terminate(void *state, gs_stage *stage, int reason)
{
	(void)stage;
	(void)reason;
	gs_amqp_source *s = state;
	atomic_store(&s->stopping, true);
	wake(s);
}

static const gs_stage_ops source_ops = {
	.init = on_init,
	.handle_demand = on_demand,
	.handle_cast = on_cast,
	.terminate = on_terminate,
};

/* Batches the stage never handled go back to the broker. */
static void drop_batch(void *msg, void *arg)
{
	cast_batch *b = msg;
	for (size_t i = 0; i < b->n; i++)
		((gs_message *)b->msgs[i])->status = GS_ECANCELED;
	post(arg, (gs_message **)b->msgs, b->n, ACT_FAIL);
	free(b);
}

static void drop_message(void *event, void *arg)
{
	gs_message *m = event;
	m->status = GS_ECANCELED;
	post(arg, &m, 1, ACT_FAIL);
}

/* --- settling ----------------------------------------------------------- */

static void release(gs_amqp_source *s, delivery *d)
{
	s->outstanding--;
	atomic_store_explicit(&s->c.outstanding, s->outstanding,
			      memory_order_relaxed);
	if (!--d->slab->refs)
		free(d->slab);
}

static bool grow_tags(gs_amqp_source *s, uint64_t tag)
{
	if (tag - s->low < s->tags_cap)
		return true;
	size_t cap = s->tags_cap ? s->tags_cap : 1024;
	while (tag - s->low >= cap)
		cap *= 2;
	unsigned char *v = calloc(cap, 1);
	if (!v)
		return false;
	for (uint64_t t = s->low; t <= s->high && s->tags_cap; t++)
		v[t & (cap - 1)] = s->tags[t & (s->tags_cap - 1)];
	free(s->tags);
	s->tags = v;
	s->tags_cap = cap;
	return true;
}

static unsigned char *tag_at(gs_amqp_source *s, uint64_t tag)
{
	return &s->tags[tag & (s->tags_cap - 1)];
}

static void connection_lost(gs_amqp_source *s, const char *why)
{
	if (why)
		gs__amqp_log(&s->conf, "source '%s': connection lost: %s",
			     s->queue, why);
	gs__amqp_close(s->conn, false);
	s->conn = NULL;
	s->consuming = false;
	s->acks_due = 0; /* the broker redelivers what was held */
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sends what the run of settled tags from `low` allows as one multiple
 * ack; acks the rest one by one only when so many wait behind an open
 * tag that the prefetch would stall. Every ack frame costs the broker
 * work, so unless `force`, a run shorter than half the prefetch
 * is held up to ACK_DELAY_MS for more to join it. */
static void flush_acks(gs_amqp_source *s, bool force)
{
	uint64_t t = s->low, last = 0;
	while (t <= s->high && *tag_at(s, t) != TAG_OPEN) {
		if (*tag_at(s, t) == TAG_ACK)
			last = t;
		t++;
	}
	bool hold = !force && t > s->low && (t - s->low) * 2 < s->qos;
	if (hold && !s->acks_due)
		s->acks_due = now_ms() + ACK_DELAY_MS;
	if (!hold || now_ms() >= s->acks_due) {
		for (uint64_t u = s->low; u < t; u++)
			*tag_at(s, u) = TAG_OPEN;
		s->low = t;
		s->acks_due = 0;
		if (last &&
		    amqp_basic_ack(s->conn, GS__AMQP_CHANNEL, last, 1)) {
			connection_lost(s, "ack failed");
			return;
		}
	}
	size_t waiting = 0;
	for (uint64_t u = t; u <= s->high; u++)
		waiting += *tag_at(s, u) == TAG_ACK;
	if (waiting <= s->qos / 2)
		return;
	for (uint64_t u = t; u <= s->high; u++)
		if (*tag_at(s, u) == TAG_ACK) {
			if (amqp_basic_ack(s->conn, GS__AMQP_CHANNEL, u, 0)) {
				connection_lost(s, "ack failed");
				return;
			}
			*tag_at(s, u) = TAG_DONE;
		}
}

static int dead_letter(gs_amqp_source *s, delivery *d)
{
	amqp_table_entry_t e = {
		.key = amqp_cstring_bytes("x-gs-retries"),
		.value = { .kind = AMQP_FIELD_KIND_I64,
			   .value.i64 = (int64_t)d->meta.deaths }
	};
	amqp_basic_properties_t p = {
		._flags = AMQP_BASIC_DELIVERY_MODE_FLAG |
			  AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
			  AMQP_BASIC_CONTENT_TYPE_FLAG,
		.delivery_mode = AMQP_DELIVERY_PERSISTENT,
		.headers = { .num_entries = 1, .entries = &e },
		.message_id = amqp_cstring_bytes(d->meta.message_id),
		.content_type = amqp_cstring_bytes(d->meta.content_type),
	};
	amqp_bytes_t body = { .len = d->meta.size, .bytes = d->m.data };
	return amqp_basic_publish(s->conn, GS__AMQP_CHANNEL, amqp_empty_bytes,
				  amqp_cstring_bytes(s->dead_queue), 0, 0, &p,
				  body);
}

/* Settles one delivery on the live connection; false if it failed. */
static bool settle_one(gs_amqp_source *s, delivery *d, act_kind kind)
{
	uint64_t tag = d->meta.delivery_tag;
	amqp_connection_state_t c = s->conn;
	int r = 0;
	unsigned char st = TAG_DONE;
	if (kind == ACT_FAIL && s->o.on_failure == GS_AMQP_RETRY) {
		if (d->meta.deaths < s->o.max_retries) {
			r = amqp_basic_reject(c, GS__AMQP_CHANNEL, tag, 0);
			bump(&s->c.retried, 1);
		} else {
			r = dead_letter(s, d);
			st = TAG_ACK;
			bump(&s->c.dead_lettered, 1);
		}
	} else if (kind == ACT_FAIL && s->o.on_failure == GS_AMQP_REJECT) {
		r = amqp_basic_reject(c, GS__AMQP_CHANNEL, tag, 0);
		bump(&s->c.rejected, 1);
	} else if (kind != ACT_ACK) {
		r = amqp_basic_nack(c, GS__AMQP_CHANNEL, tag, 0, 1);
		bump(&s->c.requeued, 1);
	} else {
		st = TAG_ACK;
		bump(&s->c.acked, 1);
	}
	*tag_at(s, tag) = st;
	return r == AMQP_STATUS_OK;
}

/* Takes the queued actions and settles them. */
static void settle(gs_amqp_source *s)
{
	pthread_mutex_lock(&s->lock);
	/* Swap the queue for the spare array: posters are held up only
	 * for the swap. */
	action *v = s->actions;
	size_t n = s->n_actions, cap = s->cap_actions;
	s->actions = s->work;
	s->cap_actions = s->cap_work;
	s->n_actions = 0;
	pthread_mutex_unlock(&s->lock);
	s->work = v;
	s->cap_work = cap;
	bool failed = false;
	for (size_t i = 0; i < n; i++) {
		delivery *d = v[i].d;
		if (!s->conn || d->epoch != s->epoch || failed) {
			bump(&s->c.stale, 1);
		} else if (!settle_one(s, d, v[i].kind)) {
			failed = true;
		}
		release(s, d);
	}
	if (failed)
		connection_lost(s, "could not settle a message");
	else if (s->conn && (n || (s->acks_due && now_ms() >= s->acks_due)))
		flush_acks(s, false);
}

/* --- connecting ------------------------------------------------------- */

static amqp_table_t table(amqp_table_entry_t *e, size_t n)
{
	return (amqp_table_t){ .num_entries = (int)n, .entries = e };
}

static amqp_table_entry_t str_entry(const char *k, const char *v)
{
	return (amqp_table_entry_t){ .key = amqp_cstring_bytes(k),
				     .value = { .kind = AMQP_FIELD_KIND_UTF8,
						.value.bytes = gs__amqp_bytes(
							v) } };
}

static bool rpc_ok(gs_amqp_source *s, const char *what)
{
	char why[400];
	if (gs__amqp_ok(amqp_get_rpc_reply(s->conn), why, sizeof why))
		return true;
	gs__amqp_log(&s->conf, "source '%s': %s: %s", s->queue, what, why);
	return false;
}

/* Declares the queue with its retry and dead-letter queues and the
 * bindings. The retry queue holds a failed message for retry_delay, then
 * dead-letters it back to the queue; the broker counts each pass in the
 * message's x-death header. */
static bool declare(gs_amqp_source *s)
{
	amqp_connection_state_t c = s->conn;
	bool retry = s->o.on_failure == GS_AMQP_RETRY;
	if (retry) {
		amqp_table_entry_t e[3] = {
			{ .key = amqp_cstring_bytes("x-message-ttl"),
			  .value = { .kind = AMQP_FIELD_KIND_I64,
				     .value.i64 = s->o.retry_delay } },
			str_entry("x-dead-letter-exchange", ""),
			str_entry("x-dead-letter-routing-key", s->queue),
		};
		amqp_queue_declare(c, GS__AMQP_CHANNEL,
				   amqp_cstring_bytes(s->retry_queue), 0, 1, 0,
				   0, table(e, 3));
		if (!rpc_ok(s, "declaring the retry queue"))
			return false;
		amqp_queue_declare(c, GS__AMQP_CHANNEL,
				   amqp_cstring_bytes(s->dead_queue), 0, 1, 0,
				   0, amqp_empty_table);
		if (!rpc_ok(s, "declaring the dead-letter queue"))
			return false;
	}
	amqp_table_entry_t e[2] = {
		str_entry("x-dead-letter-exchange", ""),
		str_entry("x-dead-letter-routing-key", s->retry_queue),
	};
	amqp_queue_declare(c, GS__AMQP_CHANNEL, amqp_cstring_bytes(s->queue), 0,
			   1, 0, 0, retry ? table(e, 2) : amqp_empty_table);
	if (!rpc_ok(s, "declaring the queue"))
		return false;
	for (size_t i = 0; i < s->o.n_bindings; i++) {
		const gs_amqp_binding *b = &s->bindings[i];
		amqp_exchange_declare(c, GS__AMQP_CHANNEL,
				      amqp_cstring_bytes(b->exchange),
				      amqp_cstring_bytes("topic"), 0, 1, 0, 0,
				      amqp_empty_table);
		if (!rpc_ok(s, "declaring an exchange"))
			return false;
		amqp_queue_bind(c, GS__AMQP_CHANNEL,
				amqp_cstring_bytes(s->queue),
				amqp_cstring_bytes(b->exchange),
				gs__amqp_bytes(b->routing_key),
				amqp_empty_table);
		if (!rpc_ok(s, "binding the queue"))
			return false;
	}
	return true;
}

static size_t prefetch_target(gs_amqp_source *s)
{
	uint64_t p = s->o.prefetch ? s->o.prefetch
				   : atomic_load_explicit(&s->demand_max,
							  memory_order_relaxed);
	return p < 1 ? 1 : p > MAX_PREFETCH ? MAX_PREFETCH : (size_t)p;
}

static bool set_qos(gs_amqp_source *s)
{
	size_t want = prefetch_target(s);
	if (want == s->qos)
		return true;
	/* Channel-wide (global): RabbitMQ applies a per-consumer prefetch
	 * only to consumers started after it, so it could not follow the
	 * demand once consuming; the channel has this one consumer. */
	amqp_basic_qos(s->conn, GS__AMQP_CHANNEL, 0, (uint16_t)want, 1);
	if (!rpc_ok(s, "setting the prefetch"))
		return false;
	s->qos = want;
	return true;
}

static bool connect_and_consume(gs_amqp_source *s)
{
	char what[300];
	snprintf(what, sizeof what, "source '%s'", s->queue);
	s->conn = gs__amqp_open(&s->conf, what);
	if (!s->conn)
		return false;
	s->epoch++;
	s->qos = 0;
	/* Tags restart at 1 on a new channel; the old ones are stale. */
	s->low = 1;
	s->high = 0;
	s->acks_due = 0;
	if (s->tags)
		memset(s->tags, TAG_OPEN, s->tags_cap);
	bool ok = s->o.declare ? declare(s) : true;
	if (ok && !s->o.declare) {
		/* Passive: a missing queue is an error, not created. */
		amqp_queue_declare(s->conn, GS__AMQP_CHANNEL,
				   amqp_cstring_bytes(s->queue), 1, 0, 0, 0,
				   amqp_empty_table);
		ok = rpc_ok(s, "looking up the queue");
	}
	ok = ok && set_qos(s);
	if (ok) {
		amqp_basic_consume(s->conn, GS__AMQP_CHANNEL,
				   amqp_cstring_bytes(s->queue),
				   amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
		ok = rpc_ok(s, "consuming");
	}
	if (!ok) {
		connection_lost(s, NULL);
		return false;
	}
	s->consuming = true;
	s->failures = 0;
	bump(&s->c.connects, 1);
	return true;
}

/* --- reading ------------------------------------------------------------ */

/* The x-death count for (queue, "rejected"): how often this message was
 * retried through the retry queue. */
static uint64_t deaths(const gs_amqp_source *s,
		       const amqp_basic_properties_t *p)
{
	if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
		return 0;
	size_t qlen = strlen(s->queue);
	for (int i = 0; i < p->headers.num_entries; i++) {
		const amqp_table_entry_t *e = &p->headers.entries[i];
		if (e->key.len != 7 || memcmp(e->key.bytes, "x-death", 7) ||
		    e->value.kind != AMQP_FIELD_KIND_ARRAY)
			continue;
		const amqp_array_t *a = &e->value.value.array;
		for (int j = 0; j < a->num_entries; j++) {
			if (a->entries[j].kind != AMQP_FIELD_KIND_TABLE)
				continue;
			const amqp_table_t *t = &a->entries[j].value.table;
			bool ours = false, rejected = false;
			uint64_t count = 0;
			for (int k = 0; k < t->num_entries; k++) {
				const amqp_table_entry_t *f = &t->entries[k];
				const amqp_bytes_t *v = &f->value.value.bytes;
				if (f->key.len == 5 &&
				    !memcmp(f->key.bytes, "queue", 5))
					ours = v->len == qlen &&
					       !memcmp(v->bytes, s->queue,
						       qlen);
				else if (f->key.len == 6 &&
					 !memcmp(f->key.bytes, "reason", 6))
					rejected = v->len == 8 &&
						   !memcmp(v->bytes, "rejected",
							   8);
				else if (f->key.len == 5 &&
					 !memcmp(f->key.bytes, "count", 5))
					count = f->value.kind ==
								AMQP_FIELD_KIND_I64
							? (uint64_t)f->value
								  .value.i64
							: f->value.value.u32;
			}
			if (ours && rejected)
				return count;
		}
	}
	return 0;
}

/* Copies n envelopes into one slab of deliveries; NULL if no memory. */
static slab *to_slab(gs_amqp_source *s, amqp_envelope_t *env, size_t n)
{
	size_t bytes = 0, n_hdrs = 0;
	for (size_t i = 0; i < n; i++) {
		const amqp_basic_properties_t *p = &env[i].message.properties;
		size_t h;
		bytes += gs__amqp_meta_size(p, &h);
		n_hdrs += h;
		bytes += env[i].message.body.len + env[i].exchange.len +
			 env[i].routing_key.len +
			 gs__amqp_prop_len(p, AMQP_BASIC_MESSAGE_ID_FLAG,
					   &p->message_id) +
			 gs__amqp_prop_len(p, AMQP_BASIC_CONTENT_TYPE_FLAG,
					   &p->content_type) +
			 5;
	}
	slab *sl = malloc(sizeof *sl + n * sizeof sl->d[0] +
			  n_hdrs * sizeof(gs_amqp_header) + bytes);
	if (!sl)
		return NULL;
	sl->refs = n;
	gs_amqp_header *hdrs = (gs_amqp_header *)&sl->d[n];
	char *at = (char *)&hdrs[n_hdrs];
	for (size_t i = 0; i < n; i++) {
		const amqp_envelope_t *e = &env[i];
		const amqp_basic_properties_t *p = &e->message.properties;
		delivery *d = &sl->d[i];
		void *body = gs__amqp_put(&at, e->message.body.bytes,
					  e->message.body.len);
		d->meta = (gs_amqp_meta){
			.delivery_tag = e->delivery_tag,
			.redelivered = e->redelivered,
			.exchange = gs__amqp_put(&at, e->exchange.bytes,
						 e->exchange.len),
			.routing_key = gs__amqp_put(&at, e->routing_key.bytes,
						    e->routing_key.len),
			.message_id = gs__amqp_put(
				&at, p->message_id.bytes,
				gs__amqp_prop_len(p, AMQP_BASIC_MESSAGE_ID_FLAG,
						  &p->message_id)),
			.content_type = gs__amqp_put(
				&at, p->content_type.bytes,
				gs__amqp_prop_len(p,
						  AMQP_BASIC_CONTENT_TYPE_FLAG,
						  &p->content_type)),
			.size = e->message.body.len,
			.deaths = deaths(s, p),
		};
		gs__amqp_meta_fill(&d->meta, p, &hdrs, &at);
		d->m = (gs_message){ .data = body,
				     .metadata = &d->meta,
				     .acknowledger = &amqp_acknowledger,
				     .ack_ref = s,
				     .ack_data = e->delivery_tag };
		d->slab = sl;
		d->epoch = s->epoch;
	}
	return sl;
}

/* A frame that is not a delivery: the broker cancelled us or closed the
 * channel. Returns false when the connection is no longer usable. */
static bool other_frame(gs_amqp_source *s)
{
	amqp_frame_t f;
	struct timeval tv = { 0, 0 };
	if (amqp_simple_wait_frame_noblock(s->conn, &f, &tv) != AMQP_STATUS_OK)
		return false;
	if (f.frame_type != AMQP_FRAME_METHOD)
		return true;
	switch (f.payload.method.id) {
	case AMQP_BASIC_CANCEL_METHOD:
		gs__amqp_log(&s->conf,
			     "source '%s': the broker cancelled the consumer "
			     "(queue deleted?)",
			     s->queue);
		return false;
	case AMQP_CHANNEL_CLOSE_METHOD:
	case AMQP_CONNECTION_CLOSE_METHOD: {
		char why[400];
		amqp_rpc_reply_t r = {
			.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION,
			.reply = f.payload.method
		};
		gs__amqp_ok(r, why, sizeof why);
		gs__amqp_log(&s->conf, "source '%s': %s", s->queue, why);
		return false;
	}
	default:
		return true;
	}
}

/* Reads what has arrived (up to READ_BATCH deliveries) and casts it to
 * the stage. */
static void read_batch(gs_amqp_source *s)
{
	amqp_envelope_t env[READ_BATCH];
	size_t n = 0;
	bool lost = false;
	amqp_maybe_release_buffers(s->conn);
	do {
		struct timeval tv = { 0, FRAME_WAIT_MS * 1000 };
		amqp_rpc_reply_t r = amqp_consume_message(s->conn, &env[n], &tv,
							  0);
		if (r.reply_type == AMQP_RESPONSE_NORMAL) {
			n++;
			continue;
		}
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_TIMEOUT)
			break;
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_UNEXPECTED_STATE &&
		    other_frame(s))
			continue;
		lost = true;
		break;
	} while (n < READ_BATCH && (amqp_data_in_buffer(s->conn) ||
				    amqp_frames_enqueued(s->conn)));
	if (n) {
		size_t dup = 0;
		slab *sl = to_slab(s, env, n);
		for (size_t i = 0; i < n; i++)
			amqp_destroy_envelope(&env[i]);
		cast_batch *b = sl ? malloc(sizeof *b + n * sizeof(void *))
				   : NULL;
		if (!b) {
			/* Without memory they go back to the queue. */
			free(sl);
			gs__amqp_log(&s->conf, "source '%s': out of memory",
				     s->queue);
			lost = true;
		} else {
			b->n = 0;
			for (size_t i = 0; i < n; i++) {
				delivery *d = &sl->d[i];
				grow_tags(s, d->meta.delivery_tag);
				*tag_at(s, d->meta.delivery_tag) = TAG_OPEN;
				s->high = d->meta.delivery_tag;
				s->outstanding++;
				if (s->o.seen && d->meta.message_id[0] &&
				    s->o.seen(s->o.seen_arg,
					      d->meta.message_id)) {
					dup++;
					*tag_at(s,
						d->meta.delivery_tag) = TAG_ACK;
					release(s, d);
				} else {
					b->msgs[b->n++] = &d->m;
				}
			}
			bump(&s->c.delivered, n);
			bump(&s->c.deduplicated, dup);
			atomic_store_explicit(&s->c.outstanding, s->outstanding,
					      memory_order_relaxed);
			if (!b->n)
				free(b);
			else if (gs_cast(s->stage, b))
				drop_batch(b, s);
			if (dup)
				flush_acks(s, false);
		}
	}
	if (lost)
		connection_lost(s, "reading failed");
}

/* --- the connector thread ------------------------------------------------ */

/* Waits up to ms for a wake-up or for the socket; true if the socket
 * has something to read. */
static bool wait_for(gs_amqp_source *s, int ms)
{
	struct pollfd fds[2] = { { .fd = s->efd, .events = POLLIN } };
	nfds_t nfds = 1;
	if (s->conn && s->consuming) {
		if (amqp_data_in_buffer(s->conn) ||
		    amqp_frames_enqueued(s->conn))
			ms = 0;
		fds[1] = (struct pollfd){ .fd = amqp_get_sockfd(s->conn),
					  .events = POLLIN };
		nfds = 2;
	}
	if (!ms && nfds == 2)
		return true;
	int r = poll(fds, nfds, ms);
	if (r > 0 && (fds[0].revents & POLLIN)) {
		uint64_t v;
		ssize_t got = read(s->efd, &v, sizeof v);
		(void)got;
	}
	return r > 0 && nfds == 2 && fds[1].revents;
}

static void *connector_main(void *arg)
{
	gs_amqp_source *s = arg;
	uint64_t retry_at = 0, drain_until = 0;
	pthread_setname_np(pthread_self(), s->thread_name);
	for (;;) {
		settle(s);
		bool stopping = atomic_load(&s->stopping);
		if (atomic_load(&s->freeing)) {
			if (!drain_until)
				drain_until = now_ms() + s->o.drain_timeout;
			if (!s->outstanding || now_ms() >= drain_until)
				break;
		}
		if (stopping && s->consuming && s->conn) {
			/* Nothing new: let the broker keep the rest. */
			amqp_basic_cancel(s->conn, GS__AMQP_CHANNEL,
					  amqp_empty_bytes);
			s->consuming = false;
			if (!rpc_ok(s, "cancelling the consumer"))
				connection_lost(s, NULL);
		}
		bool wanted = !stopping && !s->gave_up &&
			      atomic_load(&s->demand_max) > 0;
		if (!s->conn && wanted && now_ms() >= retry_at) {
			if (!connect_and_consume(s)) {
				s->failures++;
				if (gs__amqp_give_up(&s->conf, s->failures)) {
					gs__amqp_log(&s->conf,
						     "source '%s': giving up "
						     "after %u attempts",
						     s->queue, s->failures);
					s->gave_up = true;
					gs_stage_stop(s->stage, GS_ECLOSED);
				}
				retry_at = now_ms() +
					   gs__amqp_backoff(&s->conf,
							    s->failures);
			}
		}
		if (s->conn && s->consuming && !set_qos(s))
			connection_lost(s, NULL);
		int idle = IDLE_MS;
		if (s->acks_due) {
			uint64_t now = now_ms();
			idle = s->acks_due <= now ? 0
						  : (int)(s->acks_due - now);
		}
		if (!s->conn && wanted && retry_at > now_ms() &&
		    retry_at - now_ms() < IDLE_MS)
			idle = (int)(retry_at - now_ms());
		if (wait_for(s, idle) && s->conn && s->consuming)
			read_batch(s);
	}
	if (s->conn)
		flush_acks(s, true);
	gs__amqp_close(s->conn, s->conn != NULL);
	s->conn = NULL;
	return NULL;
}

/* --- the public calls ------------------------------------------------------ */

static void source_free(gs_amqp_source *s)
{
	/* Whatever is still queued was never settled with the broker,
	 * which redelivers it. */
	for (size_t i = 0; i < s->n_actions; i++)
		release(s, s->actions[i].d);
	if (s->efd >= 0)
		close(s->efd);
	pthread_mutex_destroy(&s->lock);
	gs__amqp_conf_fini(&s->conf);
	for (size_t i = 0; s->bindings && i < s->o.n_bindings; i++) {
		free((char *)s->bindings[i].exchange);
		free((char *)s->bindings[i].routing_key);
	}
	free(s->bindings);
	free(s->queue);
	free(s->retry_queue);
	free(s->dead_queue);
	free(s->actions);
	free(s->work);
	free(s->tags);
	free(s);
}

static gs_err copy_opts(gs_amqp_source *s, const gs_amqp_source_opts *o)
{
	s->o = *o;
	if (!s->o.max_retries)
		s->o.max_retries = DEFAULT_MAX_RETRIES;
	if (!s->o.retry_delay)
		s->o.retry_delay = DEFAULT_RETRY_DELAY_MS;
	if (!s->o.drain_timeout)
		s->o.drain_timeout = DEFAULT_DRAIN_TIMEOUT_MS;
	size_t len = strlen(o->queue) + 8;
	s->retry_queue = malloc(len);
	s->dead_queue = malloc(len + (o->dead_letter_queue
					      ? strlen(o->dead_letter_queue)
					      : 0));
	if (!gs__amqp_strdup(&s->queue, o->queue) || !s->retry_queue ||
	    !s->dead_queue)
		return GS_ENOMEM;
	snprintf(s->retry_queue, len, "%s.retry", o->queue);
	if (o->dead_letter_queue)
		strcpy(s->dead_queue, o->dead_letter_queue);
	else
		snprintf(s->dead_queue, len, "%s.dead", o->queue);
	s->o.queue = s->queue;
	s->o.dead_letter_queue = s->dead_queue;
	if (o->n_bindings) {
		s->bindings = calloc(o->n_bindings, sizeof *s->bindings);
		if (!s->bindings)
			return GS_ENOMEM;
		for (size_t i = 0; i < o->n_bindings; i++)
			if (!o->bindings[i].exchange ||
			    !gs__amqp_strdup((char **)&s->bindings[i].exchange,
					     o->bindings[i].exchange) ||
			    !gs__amqp_strdup(
				    (char **)&s->bindings[i].routing_key,
				    o->bindings[i].routing_key))
				return o->bindings[i].exchange ? GS_ENOMEM
							       : GS_EINVAL;
	}
	s->o.bindings = s->bindings;
	return gs__amqp_conf_init(&s->conf, &o->conn);
}

GS_AMQP_API gs_err gs_amqp_source_new(gs_pipeline *p,
				      const gs_amqp_source_opts *opts,
				      const gs_stage_opts *stage_opts,
				      gs_amqp_source **out)
{
	/* The version first: a newer struct's fields may mean more. */
	if (opts && opts->version > GS_AMQP_SOURCE_OPTS_VERSION)
		return gs__amqp_refuse_newer(&opts->conn, "gs_amqp_source_new",
					     opts->version,
					     GS_AMQP_SOURCE_OPTS_VERSION);
	if (!p || !opts || !out || !opts->queue ||
	    (opts->n_bindings && !opts->bindings) ||
	    (unsigned)opts->on_failure > GS_AMQP_REJECT)
		return GS_EINVAL;
	gs_amqp_source *s = calloc(1, sizeof *s);
	if (!s)
		return GS_ENOMEM;
	s->efd = -1;
	pthread_mutex_init(&s->lock, NULL);
	gs_err err = copy_opts(s, opts);
	if (!err) {
		s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (s->efd < 0)
			err = GS_ENOMEM;
	}
	if (err) {
		source_free(s);
		return err;
	}
	gs_stage_opts so = gs_stage_opts_copy(stage_opts);
	/* The prefetch bounds what waits here; nothing may be dropped. */
	so.buffer_size = GS_UNBOUNDED;
	so.msg_free = drop_batch;
	so.msg_free_arg = s;
	if (!so.event_free) {
		so.event_free = drop_message;
		so.event_free_arg = s;
	}
	err = gs_stage_new(p, GS_PRODUCER, &source_ops, s, &so, &s->stage);
	if (err) {
		source_free(s);
		return err;
	}
	*out = s;
	return GS_OK;
}

GS_AMQP_API gs_stage *gs_amqp_source_stage(gs_amqp_source *src)
{
	return src ? src->stage : NULL;
}

GS_AMQP_API gs_err gs_amqp_source_stats_get(const gs_amqp_source *src,
					    gs_amqp_source_stats *out)
{
	if (!src || !out)
		return GS_EINVAL;
	const counts *c = &src->c;
	*out = (gs_amqp_source_stats){
		.delivered = atomic_load(&c->delivered),
		.acked = atomic_load(&c->acked),
		.retried = atomic_load(&c->retried),
		.dead_lettered = atomic_load(&c->dead_lettered),
		.requeued = atomic_load(&c->requeued),
		.rejected = atomic_load(&c->rejected),
		.deduplicated = atomic_load(&c->deduplicated),
		.stale = atomic_load(&c->stale),
		.connects = atomic_load(&c->connects),
		.outstanding = atomic_load(&c->outstanding),
	};
	return GS_OK;
}

GS_AMQP_API void gs_amqp_source_free(gs_amqp_source *src)
{
	if (!src)
		return;
	if (src->thread_started) {
		atomic_store(&src->freeing, true);
		wake(src);
		pthread_join(src->thread, NULL);
	}
	source_free(src);
}

static gs_err broadway_new(void *arg, gs_pipeline *p, size_t index,
			   const gs_stage_opts *opts, gs_stage **out)
{
	(void)index;
	gs_amqp_source *s;
	gs_err err = gs_amqp_source_new(p, arg, opts, &s);
	if (!err)
		*out = s->stage;
	return err;
}

static void broadway_free(void *arg, void *stage_state)
{
	(void)arg;
	gs_amqp_source_free(stage_state);
}

GS_AMQP_API gs_broadway_producer
gs_amqp_broadway_producer(const gs_amqp_source_opts *opts, size_t concurrency)
{
	return (gs_broadway_producer){ .make = broadway_new,
				       .free = broadway_free,
				       .arg = (void *)opts,
				       .concurrency = concurrency };
}
