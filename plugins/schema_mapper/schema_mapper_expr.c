/*
 * schema_mapper_expr.c - computed fields: arithmetic over earlier fields.
 *
 *   expr    := term (('+' | '-') term)*
 *   term    := unary (('*' | '/') unary)*
 *   unary   := ('-' | '+') unary | primary
 *   primary := number | name | `any name` | '(' expr ')'
 *
 * Names are fields declared before the computed one (source, lookup or
 * computed) of a numeric type: int, long, double, timestamp (its ms) or
 * bool (0/1). The expression compiles to postfix code once; evaluation is a
 * loop over a small stack.
 *
 * Semantics, as SQL engines do it: a null operand makes the result null;
 * division by zero is null; + - * and unary - are exact integer operations
 * while both sides are integers, carried in 128 bits so that a step past
 * the 64-bit range (INT64_MIN - 1) is known as such instead of being
 * rounded back into it by a double, and so is / of integers that divide
 * evenly; beyond 128 bits, and for other quotients, they are computed in
 * double. The result is converted to the field type: int
 * and long truncate toward zero, and a value out of the type's range (or
 * not finite) is null. The reason for a null is kept for the message of a
 * required field.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_mapper.h"

enum eop { E_FIELD = 1, E_INT, E_DBL, E_ADD, E_SUB, E_MUL, E_DIV, E_NEG };

struct eins {
    enum eop op;
    int field;
    int64_t i;
    double d;
};

struct sm_expr {
    size_t n, depth;
    struct eins code[];
};

struct ecomp {
    const char *s;
    size_t pos;
    const struct sm_field *f;
    size_t nf;
    struct sm_expr *e;
    size_t cap, sp, maxsp;
    char *err;
    size_t errsz;
};

static int cerr(struct ecomp *c, const char *msg)
{
    snprintf(c->err, c->errsz, "expr at column %zu: %s", c->pos + 1, msg);
    return -1;
}

static void skipws(struct ecomp *c)
{
    while (c->s[c->pos] == ' ' || c->s[c->pos] == '\t')
        c->pos++;
}

static int emit(struct ecomp *c, enum eop op, int field, int64_t i, double d)
{
    if (c->e->n == c->cap)
        return cerr(c, "expression too long");
    struct eins *in = &c->e->code[c->e->n++];
    in->op = op;
    in->field = field;
    in->i = i;
    in->d = d;
    if (op == E_FIELD || op == E_INT || op == E_DBL) {
        if (++c->sp > c->maxsp)
            c->maxsp = c->sp;
    } else if (op != E_NEG) {
        c->sp--;
    }
    return 0;
}

static int p_expr(struct ecomp *c);

static int p_name(struct ecomp *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->nf; i++) {
        const struct sm_field *f = &c->f[i];
        if (strlen(f->name) != len || memcmp(f->name, name, len) != 0)
            continue;
        switch (f->type) {
        case SM_T_INT: case SM_T_LONG: case SM_T_DOUBLE: case SM_T_TIMESTAMP: case SM_T_BOOL:
            return emit(c, E_FIELD, (int)i, 0, 0);
        default: {
            char msg[160];
            snprintf(msg, sizeof(msg), "'%.*s' is a %s field; only numbers can be computed with",
                     (int)(len > 64 ? 64 : len), name, sm_type_name(f->type));
            return cerr(c, msg);
        }
        }
    }
    char msg[160];
    snprintf(msg, sizeof(msg), "unknown field '%.*s' (a computed field can use the fields "
             "declared before it)", (int)(len > 64 ? 64 : len), name);
    return cerr(c, msg);
}

static int p_primary(struct ecomp *c)
{
    skipws(c);
    const char *s = c->s;
    char ch = s[c->pos];
    if (ch == '(') {
        c->pos++;
        if (p_expr(c) < 0)
            return -1;
        skipws(c);
        if (s[c->pos] != ')')
            return cerr(c, "expected ')'");
        c->pos++;
        return 0;
    }
    if ((ch >= '0' && ch <= '9') || ch == '.') {
        size_t start = c->pos;
        int is_int = 1;
        while ((s[c->pos] >= '0' && s[c->pos] <= '9') || s[c->pos] == '.') {
            if (s[c->pos] == '.')
                is_int = 0;
            c->pos++;
        }
        if (s[c->pos] == 'e' || s[c->pos] == 'E') {
            is_int = 0;
            c->pos++;
            if (s[c->pos] == '+' || s[c->pos] == '-')
                c->pos++;
            while (s[c->pos] >= '0' && s[c->pos] <= '9')
                c->pos++;
        }
        int ok;
        double d = sm_strtod(s + start, c->pos - start, &ok);
        if (!ok || !isfinite(d)) {
            c->pos = start;
            return cerr(c, "invalid number");
        }
        if (is_int && d < 9e15)
            return emit(c, E_INT, 0, (int64_t)d, 0);
        return emit(c, E_DBL, 0, 0, d);
    }
    if (ch == '`') {
        size_t start = ++c->pos;
        while (s[c->pos] && s[c->pos] != '`')
            c->pos++;
        if (!s[c->pos])
            return cerr(c, "unterminated `name`");
        size_t end = c->pos++;
        size_t save = c->pos;
        c->pos = start;
        if (p_name(c, s + start, end - start) < 0)
            return -1;
        c->pos = save;
        return 0;
    }
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_') {
        size_t start = c->pos;
        while ((s[c->pos] >= 'a' && s[c->pos] <= 'z') || (s[c->pos] >= 'A' && s[c->pos] <= 'Z') ||
               (s[c->pos] >= '0' && s[c->pos] <= '9') || s[c->pos] == '_')
            c->pos++;
        size_t end = c->pos;
        c->pos = start;
        if (p_name(c, s + start, end - start) < 0)
            return -1;
        c->pos = end;
        return 0;
    }
    return cerr(c, ch ? "expected a number, a field name or '('" : "unexpected end of expression");
}

static int p_unary(struct ecomp *c)
{
    skipws(c);
    if (c->s[c->pos] == '-') {
        c->pos++;
        if (p_unary(c) < 0)
            return -1;
        return emit(c, E_NEG, 0, 0, 0);
    }
    if (c->s[c->pos] == '+') {
        c->pos++;
        return p_unary(c);
    }
    return p_primary(c);
}

static int p_term(struct ecomp *c)
{
    if (p_unary(c) < 0)
        return -1;
    for (;;) {
        skipws(c);
        char ch = c->s[c->pos];
        if (ch != '*' && ch != '/')
            return 0;
        c->pos++;
        if (p_unary(c) < 0 || emit(c, ch == '*' ? E_MUL : E_DIV, 0, 0, 0) < 0)
            return -1;
    }
}

static int p_expr(struct ecomp *c)
{
    if (p_term(c) < 0)
        return -1;
    for (;;) {
        skipws(c);
        char ch = c->s[c->pos];
        if (ch != '+' && ch != '-')
            return 0;
        c->pos++;
        if (p_term(c) < 0 || emit(c, ch == '+' ? E_ADD : E_SUB, 0, 0, 0) < 0)
            return -1;
    }
}

struct sm_expr *sm_expr_compile(const char *text, const struct sm_field *f, size_t nf,
                                size_t self, char *err, size_t errsz)
{
    size_t len = strlen(text);
    /* Every token emits at most one instruction. */
    size_t cap = len + 1;
    struct ecomp c = { .s = text, .f = f, .nf = self < nf ? self : nf, .cap = cap,
                       .err = err, .errsz = errsz };
    c.e = calloc(1, sizeof(*c.e) + cap * sizeof(struct eins));
    if (!c.e) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    if (p_expr(&c) < 0)
        goto fail;
    skipws(&c);
    if (text[c.pos]) {
        cerr(&c, "unexpected character");
        goto fail;
    }
    if (c.e->n == 0) {
        cerr(&c, "empty expression");
        goto fail;
    }
    c.e->depth = c.maxsp;
    return c.e;
fail:
    free(c.e);
    return NULL;
}

void sm_expr_free(struct sm_expr *e) { free(e); }

int sm_expr_reads(const struct sm_expr *e, const uint8_t *marked)
{
    for (size_t k = 0; k < e->n; k++)
        if (e->code[k].op == E_FIELD && marked[e->code[k].field])
            return 1;
    return 0;
}

/* Exact integer intermediates: any + - * of two int64 values fits. */
typedef __int128 sm_i128;
#define SM_I128_MAX ((sm_i128)(((unsigned __int128)1 << 127) - 1))

struct ev {
    uint8_t null, isint, why;
    int16_t arg;
    sm_i128 i;
    double d;
};

static void ev_null(struct ev *r, uint8_t why, int16_t arg)
{
    r->null = 1;
    r->why = why;
    r->arg = arg;
}

void sm_expr_eval(const struct sm_expr *e, const struct sm_val *vals, enum sm_ftype t,
                  struct sm_val *out)
{
    struct ev stackbuf[16] = { { 0 } }, *st = stackbuf;
    if (e->depth > 16) {
        st = calloc(e->depth, sizeof(*st));
        if (!st) {
            out->t = SPOKE_TYPE_NULL;
            out->why = SM_WHY_RANGE;
            return;
        }
    }
    size_t sp = 0;
    for (size_t k = 0; k < e->n; k++) {
        const struct eins *in = &e->code[k];
        struct ev *a, *b;
        switch (in->op) {
        case E_FIELD: {
            const struct sm_val *v = &vals[in->field];
            struct ev *r = &st[sp++];
            memset(r, 0, sizeof(*r));
            switch (v->t) {
            case SPOKE_TYPE_INT: case SPOKE_TYPE_TIMESTAMP:
                r->isint = 1;
                r->i = v->u.i;
                break;
            case SPOKE_TYPE_BOOL:
                r->isint = 1;
                r->i = v->u.b != 0;
                break;
            case SPOKE_TYPE_DOUBLE:
                r->d = v->u.d;
                break;
            default:
                ev_null(r, SM_WHY_OPERAND, (int16_t)in->field);
                break;
            }
            break;
        }
        case E_INT:
            memset(&st[sp], 0, sizeof(st[sp]));
            st[sp].isint = 1;
            st[sp++].i = in->i;
            break;
        case E_DBL:
            memset(&st[sp], 0, sizeof(st[sp]));
            st[sp++].d = in->d;
            break;
        case E_NEG:
            a = &st[sp - 1];
            if (a->null)
                break;
            if (a->isint && a->i != -SM_I128_MAX - 1) {
                a->i = -a->i;
            } else {
                a->d = -(a->isint ? (double)a->i : a->d);
                a->isint = 0;
            }
            break;
        default:
            b = &st[--sp];
            a = &st[sp - 1];
            if (a->null)
                break;
            if (b->null) {
                *a = *b;
                break;
            }
            if (in->op == E_DIV) {
                double x = a->isint ? (double)a->i : a->d, y = b->isint ? (double)b->i : b->d;
                if (y == 0) {
                    ev_null(a, SM_WHY_DIV0, 0);
                    break;
                }
                /* Integers that divide evenly stay exact (a double quotient
                 * of 9223372036854775807 / 1 would be 2^63). */
                if (a->isint && b->isint && !(b->i == -1 && a->i == -SM_I128_MAX - 1) &&
                    a->i % b->i == 0) {
                    a->i /= b->i;
                    break;
                }
                a->d = x / y;
                a->isint = 0;
                break;
            }
            if (a->isint && b->isint) {
                sm_i128 r;
                int over = in->op == E_ADD ? __builtin_add_overflow(a->i, b->i, &r)
                         : in->op == E_SUB ? __builtin_sub_overflow(a->i, b->i, &r)
                                           : __builtin_mul_overflow(a->i, b->i, &r);
                if (!over) {
                    a->i = r;
                    break;
                }
            }
            {
                double x = a->isint ? (double)a->i : a->d, y = b->isint ? (double)b->i : b->d;
                a->d = in->op == E_ADD ? x + y : in->op == E_SUB ? x - y : x * y;
                a->isint = 0;
            }
            break;
        }
    }
    struct ev r = st[0];
    if (st != stackbuf)
        free(st);
    if (r.null) {
        out->t = SPOKE_TYPE_NULL;
        out->why = r.why;
        out->arg = r.arg;
        return;
    }
    if (t == SM_T_DOUBLE) {
        double d = r.isint ? (double)r.i : r.d;
        if (!isfinite(d)) {
            out->t = SPOKE_TYPE_NULL;
            out->why = SM_WHY_RANGE;
            return;
        }
        out->t = SPOKE_TYPE_DOUBLE;
        out->u.d = d;
        return;
    }
    int64_t v;
    if (r.isint) {
        if (r.i < INT64_MIN || r.i > INT64_MAX) {
            out->t = SPOKE_TYPE_NULL;
            out->why = SM_WHY_RANGE;
            return;
        }
        v = (int64_t)r.i;
    } else {
        if (!isfinite(r.d) || r.d < -9223372036854775808.0 || r.d >= 9223372036854775808.0) {
            out->t = SPOKE_TYPE_NULL;
            out->why = SM_WHY_RANGE;
            return;
        }
        v = (int64_t)r.d;  /* truncates toward zero */
    }
    if (t == SM_T_INT && (v < INT32_MIN || v > INT32_MAX)) {
        out->t = SPOKE_TYPE_NULL;
        out->why = SM_WHY_RANGE;
        return;
    }
    out->t = t == SM_T_TIMESTAMP ? SPOKE_TYPE_TIMESTAMP : SPOKE_TYPE_INT;
    out->u.i = v;
}
