//go:build ignore

/*
 * echo: a lean example agent for resilienced, in C so that benchmarks of
 * the daemon's call path measure the daemon, not a language runtime.
 * Build: cc -O2 -o echo echo.c (the go:build line above keeps the go
 * tool, which refuses C files in a package without cgo, off this file).
 *
 * Native agent protocol: JSON-RPC 2.0, one JSON object per line on
 * stdin/stdout, log on stderr. The call method (default "task/run", or
 * -method NAME) answers {"answer":INPUT,"context_len":N}: the params' input
 * if a string, else its JSON text as a string; N counts the context entries.
 *
 * One read(2) takes what the pipe holds and one write(2) answers every
 * complete line in it, before the next read: two system calls per batch,
 * and a caller never waits on more input for its answer.
 *
 * Lines are checked by a real JSON scanner (RFC 8259, nesting up to
 * MAX_DEPTH). Member and method names are compared as raw bytes, not
 * unescaped ("\u0069d" is not "id"); bytes >= 0x80 in strings pass unchecked
 * and the last of duplicated members counts, both as in Go's encoding/json.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_LINE ((size_t)64 << 20)   /* longest request line answered */
#define MAX_DEPTH 1000                /* deepest nesting: bounds the recursion */
#define READ_CHUNK ((size_t)64 << 10) /* least free space per read: a pipe's default size */
#define KEEP_CAP ((size_t)1 << 20)    /* larger buffers are released once idle */

struct buf { char *p; size_t len, cap; };   /* a growable byte buffer */
struct span { const char *p; size_t n; };   /* a JSON value in a line; p NULL: absent */

/* The members of a request line the agent acts on. */
struct request {
	struct span jsonrpc, id, method, params; /* top-level members */
	struct span input, context;              /* members of "params", if an object */
	size_t context_len;                      /* elements of "context", if an array */
};

/* Which members of an object the scanner records. */
enum role { ROLE_OTHER, ROLE_TOP, ROLE_PARAMS };

struct scanner { const char *p, *end; struct request *req; };

struct agent {
	const char *method;      /* the call method */
	struct buf in, out;
	size_t scanned;          /* leading bytes of in known to hold no '\n' */
	int discarding;          /* skipping the rest of an over-long line */
	unsigned long long calls;
};

static _Noreturn void die(const char *what) {
	fprintf(stderr, "echo: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* buf_reserve makes room for need more bytes, doubling the capacity (but
 * not past max unless need requires) so that appends are amortised O(1). */
static void buf_reserve(struct buf *b, size_t need, size_t max) {
	if (b->cap - b->len >= need) return;
	if (need > SIZE_MAX / 4 - b->len) { errno = ENOMEM; die("buffer"); }
	size_t cap = b->cap ? b->cap * 2 : 4096;
	if (cap > max) cap = max;
	if (cap < b->len + need) cap = b->len + need;
	char *p = realloc(b->p, cap);
	if (!p) die("realloc");
	b->p = p;
	b->cap = cap;
}

static void put(struct buf *b, const char *s, size_t n) {
	if (n == 0) return; /* memcpy from NULL is undefined even for 0 bytes */
	buf_reserve(b, n, SIZE_MAX);
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void puts_buf(struct buf *b, const char *s) { put(b, s, strlen(s)); }

/* put_quoted appends JSON text as a JSON string: it may hold '"', '\\' and,
 * as whitespace, '\t' and '\r'; other control bytes get \u00XX. */
static void put_quoted(struct buf *b, const char *s, size_t n) {
	static const char hex[] = "0123456789abcdef";
	put(b, "\"", 1);
	size_t run = 0; /* start of the bytes not yet copied */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\') continue;
		put(b, s + run, i - run);
		run = i + 1;
		char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
		size_t len = 2;
		if (c == '\t') esc[1] = 't';
		else if (c == '\r') esc[1] = 'r';
		else if (c == '\n') esc[1] = 'n';
		else if (c < 0x20) {
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			len = 6;
		}
		put(b, esc, len);
	}
	put(b, s + run, n - run);
	put(b, "\"", 1);
}

/* ---- The JSON scanner. Each scan_ function consumes one value (or token)
 * at s->p and returns 0, or -1 when the text is not JSON. */

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static void skip_ws(struct scanner *s) {
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || *s->p == '\n'))
		s->p++;
}

/* span_is reports whether sp holds exactly the bytes of lit. */
static int span_is(struct span sp, const char *lit) {
	return sp.p && sp.n == strlen(lit) && memcmp(sp.p, lit, sp.n) == 0;
}

static int scan_string(struct scanner *s) {
	for (s->p++; s->p < s->end;) { /* past the opening quote */
		unsigned char c = (unsigned char)*s->p++;
		if (c == '"') return 0;
		if (c < 0x20) return -1; /* control characters must be escaped */
		if (c != '\\') continue;
		if (s->p == s->end) return -1;
		c = (unsigned char)*s->p++;
		if (c == 'u') {
			for (int i = 0; i < 4; i++, s->p++)
				if (s->p == s->end || !is_hex(*s->p)) return -1;
		} else if (!strchr("\"\\/bfnrt", c) || c == 0) {
			return -1;
		}
	}
	return -1; /* unterminated */
}

/* scan_digits consumes one digit or more. */
static int scan_digits(struct scanner *s) {
	if (s->p == s->end || !is_digit(*s->p)) return -1;
	while (s->p < s->end && is_digit(*s->p)) s->p++;
	return 0;
}

/* scan_number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? A leading
 * zero ends the integer part, so "01" fails in the caller, at the '1'. */
static int scan_number(struct scanner *s) {
	if (*s->p == '-') s->p++;
	if (s->p < s->end && *s->p == '0') s->p++;
	else if (scan_digits(s)) return -1;
	if (s->p < s->end && *s->p == '.' && (s->p++, scan_digits(s))) return -1;
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-')) s->p++;
		if (scan_digits(s)) return -1;
	}
	return 0;
}

static int scan_literal(struct scanner *s, const char *lit) {
	size_t n = strlen(lit);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0) return -1;
	s->p += n;
	return 0;
}

static int scan_value(struct scanner *s, int depth, enum role role, size_t *count);

/* A member the scanner records: where its value goes, how it is scanned. */
struct member { struct span *dst; enum role role; size_t *count; };

/* scan_key consumes `"name" :` and picks what to record of the value. */
static int scan_key(struct scanner *s, enum role role, struct member *m) {
	struct request *r = s->req;
	if (s->p == s->end || *s->p != '"') return -1;
	struct span key = {s->p + 1, 0};
	if (scan_string(s)) return -1;
	key.n = (size_t)(s->p - 1 - key.p); /* the raw bytes between the quotes */
	skip_ws(s);
	if (s->p == s->end || *s->p++ != ':') return -1;
	skip_ws(s);
	if (role == ROLE_TOP) {
		if (span_is(key, "jsonrpc")) m->dst = &r->jsonrpc;
		else if (span_is(key, "id")) m->dst = &r->id;
		else if (span_is(key, "method")) m->dst = &r->method;
		else if (span_is(key, "params")) {
			*m = (struct member){&r->params, ROLE_PARAMS, NULL};
			r->input = r->context = (struct span){0}; /* a later "params" replaces all */
			r->context_len = 0;
		}
	} else if (role == ROLE_PARAMS) {
		if (span_is(key, "input")) m->dst = &r->input;
		else if (span_is(key, "context")) {
			*m = (struct member){&r->context, ROLE_OTHER, &r->context_len};
			r->context_len = 0;
		}
	}
	return 0;
}

/* scan_container scans an object or an array at nesting level depth. Of an
 * object it records the members role asks for; an array's elements are
 * counted into *count when count is not NULL. */
static int scan_container(struct scanner *s, int depth, enum role role, size_t *count) {
	char close = *s->p == '{' ? '}' : ']';
	if (depth > MAX_DEPTH) return -1;
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == close) { s->p++; return 0; }
	for (;;) {
		struct member m = {NULL, ROLE_OTHER, NULL};
		skip_ws(s);
		if (close == '}' && scan_key(s, role, &m)) return -1;
		const char *v = s->p;
		if (scan_value(s, depth, m.role, m.count)) return -1;
		if (m.dst) *m.dst = (struct span){v, (size_t)(s->p - v)};
		if (count) (*count)++;
		skip_ws(s);
		if (s->p == s->end) return -1;
		char c = *s->p++;
		if (c == close) return 0;
		if (c != ',') return -1;
	}
}

/* scan_value scans the value at s->p, inside depth containers. */
static int scan_value(struct scanner *s, int depth, enum role role, size_t *count) {
	if (s->p == s->end) return -1;
	switch (*s->p) {
	case '{': return scan_container(s, depth + 1, role, NULL);
	case '[': return scan_container(s, depth + 1, ROLE_OTHER, count);
	case '"': return scan_string(s);
	case 't': return scan_literal(s, "true");
	case 'f': return scan_literal(s, "false");
	case 'n': return scan_literal(s, "null");
	default: return *s->p == '-' || is_digit(*s->p) ? scan_number(s) : -1;
	}
}

/* ---- Replies. */

/* reply_head appends a reply up to its "result" or "error" member's value;
 * id.p NULL stands for the id null. */
static void reply_head(struct buf *out, struct span id, const char *member) {
	puts_buf(out, "{\"jsonrpc\":\"2.0\",\"id\":");
	if (id.p) put(out, id.p, id.n);
	else puts_buf(out, "null");
	puts_buf(out, member);
}

static void reply_error(struct buf *out, struct span id, int code, const char *msg) {
	char tail[128];
	reply_head(out, id, ",\"error\":");
	snprintf(tail, sizeof tail, "{\"code\":%d,\"message\":\"%s\"}}\n", code, msg);
	puts_buf(out, tail);
}

static void handle_line(struct agent *a, const char *line, size_t n) {
	static const struct span null_id;
	struct buf *out = &a->out;
	struct request req = {0};
	struct scanner s = {line, line + n, &req};
	if (n > MAX_LINE) { reply_error(out, null_id, -32600, "request line over 64 MiB"); return; }
	skip_ws(&s);
	if (s.p == s.end) return; /* a blank line is no request */
	int is_object = *s.p == '{';
	int bad = scan_value(&s, 0, ROLE_TOP, NULL);
	skip_ws(&s);
	if (bad || s.p != s.end) { reply_error(out, null_id, -32700, "parse error"); return; }
	if (!is_object) { reply_error(out, null_id, -32600, "invalid request"); return; }
	if (!req.id.p) return; /* a notification is never answered */
	char c = req.id.p[0];
	if (c != '"' && c != 'n' && c != '-' && !is_digit(c)) {
		/* JSON-RPC ids are strings, numbers or null: echo no other value */
		reply_error(out, null_id, -32600, "invalid request");
		return;
	}
	if (!span_is(req.jsonrpc, "\"2.0\"") || !req.method.p || req.method.p[0] != '"') {
		reply_error(out, req.id, -32600, "invalid request");
		return;
	}
	struct span name = {req.method.p + 1, req.method.n - 2}; /* without the quotes */
	if (span_is(name, a->method)) {
		char tail[64];
		reply_head(out, req.id, ",\"result\":{\"answer\":");
		if (!req.input.p) puts_buf(out, "\"\"");
		else if (req.input.p[0] == '"') put(out, req.input.p, req.input.n);
		else put_quoted(out, req.input.p, req.input.n);
		snprintf(tail, sizeof tail, ",\"context_len\":%zu}}\n", req.context_len);
		puts_buf(out, tail);
		a->calls++;
	} else if (span_is(name, "initialize")) {
		reply_head(out, req.id, ",\"result\":{\"name\":\"echo\",\"protocol\":\"resilient/1\"}}\n");
	} else if (span_is(name, "ping")) {
		reply_head(out, req.id, ",\"result\":{}}\n");
	} else {
		reply_error(out, req.id, -32601, "method not found");
	}
}

/* ---- I/O. */

/* wait_fd waits until fd is ready: O_NONBLOCK belongs to the open file,
 * which the agent may share with a process that set it. */
static void wait_fd(int fd, short events) {
	struct pollfd p = {.fd = fd, .events = events};
	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR) die("poll");
}

/* flush writes the replies of one read at once. */
static void flush(struct agent *a) {
	for (size_t off = 0; off < a->out.len;) {
		ssize_t n = write(1, a->out.p + off, a->out.len - off);
		if (n >= 0) off += (size_t)n;
		else if (errno == EAGAIN || errno == EWOULDBLOCK) wait_fd(1, POLLOUT);
		else if (errno != EINTR) die("write stdout");
	}
	a->out.len = 0;
	if (a->out.cap > KEEP_CAP) { /* after an outsized answer, give the memory back */
		free(a->out.p);
		a->out = (struct buf){0};
	}
}

/* process answers the complete lines in a->in and keeps the partial last
 * line at the front of the buffer, for the next read to complete. */
static void process(struct agent *a) {
	struct buf *in = &a->in;
	size_t start = 0, from = a->scanned; /* memchr each byte once, however long the line */
	char *nl;
	while ((nl = memchr(in->p + from, '\n', in->len - from)) != NULL) {
		size_t end = (size_t)(nl - in->p);
		if (a->discarding) a->discarding = 0; /* the end of a line already answered */
		else handle_line(a, in->p + start, end - start);
		start = from = end + 1;
	}
	size_t rest = in->len - start;
	if (a->discarding) {
		rest = 0;
	} else if (rest > MAX_LINE) { /* answer it now, skip it up to its '\n' */
		reply_error(&a->out, (struct span){0}, -32600, "request line over 64 MiB");
		a->discarding = 1;
		rest = 0;
	}
	if (rest && start) memmove(in->p, in->p + start, rest);
	in->len = a->scanned = rest;
	if (in->cap > KEEP_CAP && rest <= READ_CHUNK) { /* a long line is done: shrink */
		char *p = realloc(in->p, 2 * READ_CHUNK);
		if (p) { in->p = p; in->cap = 2 * READ_CHUNK; }
	}
}

static _Noreturn void usage(int code) {
	fputs("usage: echo [-method NAME]\n"
	      "An example agent for resilienced (JSON-RPC 2.0 on stdin/stdout) that\n"
	      "answers the call method by echoing the params' input.\n"
	      "  -method NAME  name of the call method (default \"task/run\")\n",
	      stderr);
	exit(code);
}

int main(int argc, char **argv) {
	struct agent a = {.method = "task/run"};
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) usage(0);
		if (strcmp(argv[i], "-method") || i + 1 == argc || !argv[i + 1][0]) usage(2);
		a.method = argv[++i];
	}
	/* A reader gone away is a write error (EPIPE) told on stderr, not a
	 * silent death by SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "echo: started pid %ld method %s\n", (long)getpid(), a.method);
	for (;;) {
		/* The buffer holds at most one partial line (<= MAX_LINE) and
		 * one read: no need to double past that. */
		buf_reserve(&a.in, READ_CHUNK, MAX_LINE + READ_CHUNK + 1);
		ssize_t n = read(0, a.in.p + a.in.len, a.in.cap - a.in.len);
		if (n == 0) break;
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) wait_fd(0, POLLIN);
			else if (errno != EINTR) die("read stdin");
			continue;
		}
		a.in.len += (size_t)n;
		process(&a);
		flush(&a);
	}
	if (!a.discarding && a.in.len > 0) { /* a last line without its '\n' is still a request */
		handle_line(&a, a.in.p, a.in.len);
		flush(&a);
	}
	fprintf(stderr, "echo: stdin closed after %llu calls\n", a.calls);
	free(a.in.p);
	free(a.out.p);
	return 0;
}
