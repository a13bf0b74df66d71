// SPDX-License-Identifier: MIT
/*
 * Message properties both ways: what a sink's encode asked for (message
 * id, correlation id, app id, string headers...) as rabbitmq-c's basic
 * properties, and a delivery's properties copied into the source's
 * metadata, strings NUL-terminated in the delivery's own block.
 */
#include <string.h>

#include "amqp_internal.h"

/* AMQP's short strings: property values and table keys. */
#define SHORT_STR_MAX 255

static bool set_str(amqp_basic_properties_t *p, amqp_flags_t flag,
		    amqp_bytes_t *field, const char *value)
{
	if (!value)
		return true;
	p->_flags |= flag;
	*field = amqp_cstring_bytes(value);
	return field->len <= SHORT_STR_MAX;
}

/* The content header frame these properties make, in bytes: rabbitmq-c
 * encodes it in a buffer of frame_max, after it has sent the publish's
 * method frame, so one that does not fit costs the connection (the broker
 * closes it: 505 UNEXPECTED_FRAME), not just the message. */
static size_t header_frame_size(const amqp_basic_properties_t *p)
{
	/* Frame header and end, class, weight, body size, flags, delivery
	 * mode. */
	size_t n = 7 + 1 + 2 + 2 + 8 + 2 + 1;
	const amqp_bytes_t *strs[] = { &p->message_id, &p->content_type,
				       &p->correlation_id, &p->app_id };
	const amqp_flags_t flags[] = { AMQP_BASIC_MESSAGE_ID_FLAG,
				       AMQP_BASIC_CONTENT_TYPE_FLAG,
				       AMQP_BASIC_CORRELATION_ID_FLAG,
				       AMQP_BASIC_APP_ID_FLAG };
	for (size_t i = 0; i < 4; i++)
		n += 1 + gs__amqp_prop_len(p, flags[i], strs[i]);
	if (p->_flags & AMQP_BASIC_HEADERS_FLAG) {
		n += 4;
		for (int i = 0; i < p->headers.num_entries; i++) {
			const amqp_table_entry_t *e = &p->headers.entries[i];
			n += 1 + e->key.len + 1 + 4 + e->value.value.bytes.len;
		}
	}
	return n;
}

const char *gs__amqp_props(const gs_amqp_out *out, amqp_basic_properties_t *p,
			   amqp_table_entry_t *entries, size_t frame_max)
{
	if (out->n_headers > GS_AMQP_MAX_HEADERS ||
	    (out->n_headers && !out->headers))
		return "too many headers";
	if ((out->exchange && strlen(out->exchange) > SHORT_STR_MAX) ||
	    (out->routing_key && strlen(out->routing_key) > SHORT_STR_MAX))
		return "an exchange or routing key longer than 255 bytes";
	*p = (amqp_basic_properties_t){
		._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
		.delivery_mode = out->transient ? AMQP_DELIVERY_NONPERSISTENT
						: AMQP_DELIVERY_PERSISTENT,
	};
	bool fit = set_str(p, AMQP_BASIC_MESSAGE_ID_FLAG, &p->message_id,
			   out->message_id);
	fit &= set_str(p, AMQP_BASIC_CONTENT_TYPE_FLAG, &p->content_type,
		       out->content_type);
	fit &= set_str(p, AMQP_BASIC_CORRELATION_ID_FLAG, &p->correlation_id,
		       out->correlation_id);
	fit &= set_str(p, AMQP_BASIC_APP_ID_FLAG, &p->app_id, out->app_id);
	if (!fit)
		return "a property longer than 255 bytes";
	for (size_t i = 0; i < out->n_headers; i++) {
		const gs_amqp_header *h = &out->headers[i];
		if (!h->key)
			return "a header without a key";
		if (strlen(h->key) > SHORT_STR_MAX)
			return "a header key longer than 255 bytes";
		entries[i] = (amqp_table_entry_t){
			.key = amqp_cstring_bytes(h->key),
			.value = { .kind = AMQP_FIELD_KIND_UTF8,
				   .value.bytes = gs__amqp_bytes(h->value) }
		};
	}
	if (out->n_headers) {
		p->_flags |= AMQP_BASIC_HEADERS_FLAG;
		p->headers = (amqp_table_t){ .num_entries = (int)out->n_headers,
					     .entries = entries };
	}
	if (header_frame_size(p) > frame_max)
		return "properties and headers larger than a frame";
	return NULL;
}

size_t gs__amqp_prop_len(const amqp_basic_properties_t *p, amqp_flags_t flag,
			 const amqp_bytes_t *b)
{
	return (p->_flags & flag) ? b->len : 0;
}

char *gs__amqp_put(char **at, const void *bytes, size_t len)
{
	char *s = *at;
	if (len)
		memcpy(s, bytes, len);
	s[len] = '\0';
	*at += len + 1;
	return s;
}

static bool str_header(const amqp_table_entry_t *e)
{
	return e->value.kind == AMQP_FIELD_KIND_UTF8 ||
	       e->value.kind == AMQP_FIELD_KIND_BYTES;
}

static const amqp_table_t *headers(const amqp_basic_properties_t *p)
{
	static const amqp_table_t none = { 0 };
	return (p->_flags & AMQP_BASIC_HEADERS_FLAG) ? &p->headers : &none;
}

size_t gs__amqp_meta_size(const amqp_basic_properties_t *p, size_t *n_headers)
{
	size_t bytes = gs__amqp_prop_len(p, AMQP_BASIC_CORRELATION_ID_FLAG,
					 &p->correlation_id) +
		       gs__amqp_prop_len(p, AMQP_BASIC_APP_ID_FLAG,
					 &p->app_id) +
		       2;
	const amqp_table_t *t = headers(p);
	*n_headers = 0;
	for (int i = 0; i < t->num_entries; i++)
		if (str_header(&t->entries[i])) {
			bytes += t->entries[i].key.len +
				 t->entries[i].value.value.bytes.len + 2;
			++*n_headers;
		}
	return bytes;
}

void gs__amqp_meta_fill(gs_amqp_meta *m, const amqp_basic_properties_t *p,
			gs_amqp_header **hdrs, char **at)
{
	m->correlation_id = gs__amqp_put(
		at, p->correlation_id.bytes,
		gs__amqp_prop_len(p, AMQP_BASIC_CORRELATION_ID_FLAG,
				  &p->correlation_id));
	m->app_id = gs__amqp_put(at, p->app_id.bytes,
				 gs__amqp_prop_len(p, AMQP_BASIC_APP_ID_FLAG,
						   &p->app_id));
	const amqp_table_t *t = headers(p);
	m->headers = *hdrs;
	m->n_headers = 0;
	for (int i = 0; i < t->num_entries; i++) {
		const amqp_table_entry_t *e = &t->entries[i];
		if (!str_header(e))
			continue;
		gs_amqp_header *h = &(*hdrs)[m->n_headers++];
		h->key = gs__amqp_put(at, e->key.bytes, e->key.len);
		h->value = gs__amqp_put(at, e->value.value.bytes.bytes,
					e->value.value.bytes.len);
	}
	*hdrs += m->n_headers;
}
