// SPDX-License-Identifier: MIT
/*
 * Small containers for the flow layer: a growable pointer vector (behind
 * gs_flow_out and gs_flow_events), an open-addressing table of uint64
 * keys (uniq_by sets, join sides), and the hashes that make such keys.
 */
#include <stdlib.h>
#include <string.h>

#include "flow_internal.h"

gs_err gs__flow_vec_reserve(gs__flow_vec *v, size_t more)
{
	if (v->cap - v->n >= more)
		return GS_OK;
	size_t cap = v->cap ? v->cap : 16;
	while (cap - v->n < more) {
		if (cap > SIZE_MAX / 2 / sizeof(void *))
			return GS_ENOMEM;
		cap *= 2;
	}
	void **nv = realloc(v->v, cap * sizeof(void *));
	if (!nv)
		return GS_ENOMEM;
	v->v = nv;
	v->cap = cap;
	return GS_OK;
}

gs_err gs__flow_vec_push(gs__flow_vec *v, void *p)
{
	if (v->n == v->cap) {
		gs_err e = gs__flow_vec_reserve(v, 1);
		if (e)
			return e;
	}
	v->v[v->n++] = p;
	return GS_OK;
}

void gs__flow_vec_free(gs__flow_vec *v)
{
	free(v->v);
	memset(v, 0, sizeof(*v));
}

GS_FLOW_API gs_err gs_flow_out_push(gs_flow_out *out, void *event)
{
	if (!out)
		return GS_EINVAL;
	return gs__flow_vec_push(&out->vec, event);
}

GS_FLOW_API gs_flow_events *gs_flow_events_new(void)
{
	return calloc(1, sizeof(gs_flow_events));
}

GS_FLOW_API gs_err gs_flow_events_push(gs_flow_events *l, void *event)
{
	if (!l)
		return GS_EINVAL;
	return gs__flow_vec_push(&l->vec, event);
}

GS_FLOW_API size_t gs_flow_events_len(const gs_flow_events *l)
{
	return l ? l->vec.n : 0;
}

GS_FLOW_API void *gs_flow_events_at(const gs_flow_events *l, size_t i)
{
	return l && i < l->vec.n ? l->vec.v[i] : NULL;
}

GS_FLOW_API void gs_flow_events_free(gs_flow_events *l,
				     void (*event_free)(void *, void *),
				     void *arg)
{
	if (!l)
		return;
	if (event_free)
		for (size_t i = 0; i < l->vec.n; i++)
			event_free(l->vec.v[i], arg);
	gs__flow_vec_free(&l->vec);
	free(l);
}

/* FNV-1a over the bytes, then the length and the mix: FNV alone leaves
 * short inputs clustered in a few bits. */
#define FNV_OFFSET 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL

GS_FLOW_API uint64_t gs_flow_hash_bytes(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = FNV_OFFSET;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * FNV_PRIME;
	return gs__flow_mix(h ^ n);
}

/* The same as gs_flow_hash_bytes(s, strlen(s)), in one pass: keys are
 * mostly short words, where a strlen call costs as much as the hash. */
GS_FLOW_API uint64_t gs_flow_hash_str(const char *s)
{
	uint64_t h = FNV_OFFSET;
	size_t n = 0;
	for (; s && s[n]; n++)
		h = (h ^ (unsigned char)s[n]) * FNV_PRIME;
	return gs__flow_mix(h ^ n);
}

static bool table_grow(gs__flow_table *t)
{
	size_t cap = t->cap ? t->cap * 2 : 16;
	gs__flow_table nt = {
		.keys = malloc(cap * sizeof(uint64_t)),
		.vals = malloc(cap * sizeof(void *)),
		.used = calloc(cap, 1),
		.cap = cap,
	};
	if (!nt.keys || !nt.vals || !nt.used) {
		gs__flow_table_free(&nt);
		return false;
	}
	for (size_t i = 0; i < t->cap; i++) {
		if (!t->used[i])
			continue;
		size_t j = gs__flow_mix(t->keys[i]) & (cap - 1);
		while (nt.used[j])
			j = (j + 1) & (cap - 1);
		nt.used[j] = 1;
		nt.keys[j] = t->keys[i];
		nt.vals[j] = t->vals[i];
		nt.n++;
	}
	gs__flow_table_free(t);
	*t = nt;
	return true;
}

void **gs__flow_table_get(gs__flow_table *t, uint64_t key, bool add,
			  bool *added)
{
	if (added)
		*added = false;
	if (t->cap) {
		size_t j = gs__flow_mix(key) & (t->cap - 1);
		while (t->used[j]) {
			if (t->keys[j] == key)
				return &t->vals[j];
			j = (j + 1) & (t->cap - 1);
		}
	}
	if (!add)
		return NULL;
	/* Keep the load under 1/2 so probes stay short. */
	if ((t->n + 1) * 2 > t->cap && !table_grow(t))
		return NULL;
	size_t j = gs__flow_mix(key) & (t->cap - 1);
	while (t->used[j])
		j = (j + 1) & (t->cap - 1);
	t->used[j] = 1;
	t->keys[j] = key;
	t->vals[j] = NULL;
	t->n++;
	if (added)
		*added = true;
	return &t->vals[j];
}

bool gs__flow_table_del(gs__flow_table *t, uint64_t key, void **val)
{
	if (!t->cap)
		return false;
	size_t mask = t->cap - 1, j = gs__flow_mix(key) & mask;
	while (t->used[j] && t->keys[j] != key)
		j = (j + 1) & mask;
	if (!t->used[j])
		return false;
	if (val)
		*val = t->vals[j];
	t->used[j] = 0;
	t->n--;
	/* Re-seat the rest of the cluster (backward-shift deletion). */
	for (size_t k = (j + 1) & mask; t->used[k]; k = (k + 1) & mask) {
		uint64_t kk = t->keys[k];
		void *vv = t->vals[k];
		t->used[k] = 0;
		t->n--;
		bool added;
		void **slot = gs__flow_table_get(t, kk, true, &added);
		*slot = vv; /* cannot fail: there is room */
	}
	return true;
}

void gs__flow_table_free(gs__flow_table *t)
{
	free(t->keys);
	free(t->vals);
	free(t->used);
	memset(t, 0, sizeof(*t));
}
