// SPDX-License-Identifier: MIT
/*
 * The fused per-event operations (map, filter, reject, flat_map, each,
 * uniq_by, map_batch) of one stage, applied to a whole batch one operation at a time
 * between two reusable buffers, so the hot path allocates nothing once the
 * buffers have grown.
 */
#include <stdlib.h>

#include "flow_internal.h"

gs_err gs__flow_ops_init(gs__flow_stage *st)
{
	size_t n = st->layer->nops;
	if (!n)
		return GS_OK;
	st->uniq = calloc(n, sizeof(*st->uniq));
	return st->uniq ? GS_OK : GS_ENOMEM;
}

void gs__flow_ops_fini(gs__flow_stage *st)
{
	if (st->uniq)
		for (size_t i = 0; i < st->layer->nops; i++)
			gs__flow_table_free(&st->uniq[i]);
	free(st->uniq);
	st->uniq = NULL;
	gs__flow_vec_free(&st->a.vec);
	gs__flow_vec_free(&st->b.vec);
}

static void drop_all(const gs_flow *f, void **ev, size_t n)
{
	for (size_t i = 0; i < n; i++)
		gs__flow_drop(f, ev[i]);
}

/* Applies one operation to cur[0..n) into `out`. */
static int apply(gs__flow_stage *st, size_t k, void **cur, size_t n,
		 gs__flow_vec *out)
{
	const gs__flow_op *op = &st->layer->ops[k];
	const gs_flow *f = st->flow;
	size_t i = 0;
	int r = 0;

	bool grows = op->kind == GS__OP_FLAT_MAP || op->kind == GS__OP_BATCH;
	if (!grows && (r = gs__flow_vec_reserve(out, n))) {
		drop_all(f, cur, n);
		return r;
	}
	switch (op->kind) {
	case GS__OP_MAP:
		for (; i < n; i++)
			out->v[out->n++] = op->fn.map(op->arg, cur[i]);
		break;
	case GS__OP_FILTER:
	case GS__OP_REJECT: {
		bool keep_if = op->kind == GS__OP_FILTER;
		for (; i < n; i++) {
			if (op->fn.pred(op->arg, cur[i]) == keep_if)
				out->v[out->n++] = cur[i];
			else
				gs__flow_drop(f, cur[i]);
		}
		break;
	}
	case GS__OP_EACH:
		for (; i < n; i++) {
			if ((r = op->fn.each(op->arg, cur[i])))
				break;
			out->v[out->n++] = cur[i];
		}
		break;
	case GS__OP_UNIQ:
		for (; i < n; i++) {
			bool added;
			uint64_t key = op->fn.key(op->arg, cur[i]);
			if (!gs__flow_table_get(&st->uniq[k], key, true,
						&added)) {
				r = GS_ENOMEM;
				break;
			}
			if (added)
				out->v[out->n++] = cur[i];
			else
				gs__flow_drop(f, cur[i]);
		}
		break;
	case GS__OP_BATCH:
		r = op->fn.batch(op->arg, cur, n, (gs_flow_out *)out);
		i = n; /* the callee owns them all */
		break;
	case GS__OP_FLAT_MAP: {
		gs_flow_out *o = (gs_flow_out *)out;
		for (; i < n; i++) {
			if ((r = op->fn.flat_map(op->arg, cur[i], o))) {
				i++; /* the callee owned cur[i] */
				break;
			}
		}
		break;
	}
	}
	if (r) {
		drop_all(f, cur + i, n - i);
		drop_all(f, out->v, out->n);
		out->n = 0;
	}
	return r;
}

int gs__flow_ops_run(gs__flow_stage *st, void **in, size_t n, void ***out,
		     size_t *n_out)
{
	void **cur = in;
	size_t cn = n;
	gs__flow_vec *bufs[2] = { &st->a.vec, &st->b.vec };
	/* Once nothing is left the later operations have nothing to do: a
	 * map_batch is never handed an empty batch. */
	for (size_t k = 0; k < st->layer->nops && cn; k++) {
		gs__flow_vec *o = bufs[k & 1];
		o->n = 0;
		int r = apply(st, k, cur, cn, o);
		if (r)
			return r;
		cur = o->v;
		cn = o->n;
	}
	*out = cur;
	*n_out = cn;
	return 0;
}
