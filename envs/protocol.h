/*
 * protocol.h - the Biomni A1 agent protocol, in one place.
 *
 * An assistant message is free text holding tags:
 *
 *   <think>reasoning</think><execute>code</execute>       run code, see an observation
 *   <think>reasoning</think><solution>answer</solution>   the final answer
 *
 * Generation stops at the first "</execute>" or "</solution>" (proto_stop_len).
 * Parsing follows Biomni's agent (biomni/agent/a1.py, read for facts):
 *   - an opened but unclosed <execute>, <solution> or <think> is closed at the
 *     end of the message (in that order), so a generation cut by the token
 *     limit still parses;
 *   - tags match case-insensitively, the first (shortest) block of each wins;
 *   - a <solution> ends the episode; else an <execute> runs code; else a
 *     message with a fenced ``` code block (python/bash/r or none) counts as
 *     an execute; else a <think>-only message just asks for the next message;
 *     else it is a parsing failure: the first one gets a correction message,
 *     the second ends the episode (upstream meant this; its own counter never
 *     fires, see episode.c).
 *   - the tool comes from the code's first line: Python by default, "#!SQL"
 *     the sql tool, "#!BASH" / "# Bash script" the shell, "#!CLI" the shell
 *     with the command joined onto one line, "#!R" / "# R code" / "# R script"
 *     R, which we do not ship: the agent gets an error observation.
 *   - an observation is "<observation>RESULT</observation>", RESULT cut to
 *     10,000 characters (Unicode code points, as Python counts) behind a note.
 *
 * The format reward (MISSION.md) is strict and is computed on the messages
 * as generated (before any auto-closing): see proto_format_reward().
 */
#ifndef VIV_PROTOCOL_H
#define VIV_PROTOCOL_H

#include <stddef.h>

#define PROTO_OBS_MAX_CHARS 10000
#define PROTO_MAX_PARSE_FAILURES 2

enum proto_action {
    PROTO_PARSE_ERROR = 0, /* no usable tag */
    PROTO_THINK_ONLY,      /* only <think>: ask for the next message */
    PROTO_EXECUTE,         /* run code */
    PROTO_SOLUTION,        /* final answer */
};

enum proto_tool {
    PROTO_TOOL_PYTHON = 0,
    PROTO_TOOL_SQL,
    PROTO_TOOL_SHELL,
    PROTO_TOOL_R,          /* vivd's policy "r"; where it has none the model reads that R is not available */
};

/* One parsed assistant message. Strings are malloc'd copies (or NULL). */
struct proto_msg {
    enum proto_action action;
    char *think;    /* inside <think>, NULL if none */
    char *code;     /* inside <execute> (or the fenced block), NULL if none */
    char *solution; /* inside <solution>, NULL if none */
};

/* Length of `text` a generator keeps: up to and including the first
 * "</execute>" or "</solution>" (case-sensitive, like a stop string); len if
 * neither occurs. */
size_t proto_stop_len(const char *text, size_t len);

/* Parse one assistant message (need not be NUL-terminated). Never fails:
 * garbage parses as PROTO_PARSE_ERROR, and so does a <solution> or
 * <execute> block holding a NUL byte (it could be neither graded nor run
 * whole). Free with proto_msg_free(). */
void proto_parse(const char *text, size_t len, struct proto_msg *out);
void proto_msg_free(struct proto_msg *m);

/* Pick the tool from the code's first line and return the code to run
 * (marker removed, trimmed; "#!CLI" joined onto one line), malloc'd. */
char *proto_select_tool(const char *code, enum proto_tool *tool);

/* Tasks built here may carry their inputs as meta.inputs (a JSON object:
 * the gene, the options, the sequence...). Python code then runs with them
 * defined as the dict TASK, the way a notebook hands an analyst the data a
 * question comes with, so code need not retype identifiers from the prompt.
 * Returns a malloc'd copy of `code` with the one-line definition in front,
 * or a plain copy when `meta` has no inputs. Only for the python tool. */
struct cJSON;
char *proto_with_task_inputs(const struct cJSON *meta, const char *code);
/* The tool's name, which is also the vivd policy that runs it: "python",
 * "sql", "shell", "r". */
const char *proto_tool_name(enum proto_tool t);

/* "<observation>RESULT</observation>" with RESULT cut to 10,000 code points
 * behind a note when longer. Invalid UTF-8 bytes count one each, a NUL byte
 * one character like any other (RESULT is a tool's output and may hold
 * them). malloc'd; its length in *out_len when out_len is not NULL. */
char *proto_render_observation(const char *result, size_t len, size_t *out_len);

/* The format reward of a whole trajectory's assistant messages, 1 or 0:
 * every message, trimmed of surrounding whitespace, is exactly
 *   <think>T</think> WS <execute>C</execute>   or
 *   <think>T</think> WS <solution>S</solution>
 * with lower-case tags, T, C and S not blank and holding none of the six
 * protocol tags (any case); <solution> in the last message and only there.
 * No messages: 0. `why` (optional) gets the first rule broken. */
int proto_format_reward(const char *const *msgs, const size_t *lens, int n, char *why, size_t whylen);
/* One message's shape: 1 = execute-shaped, 2 = solution-shaped, 0 = neither. */
int proto_message_shape(const char *text, size_t len);

/* The texts the environment sends on parsing failures (our wording). */
extern const char *const proto_correction_text;
extern const char *const proto_terminated_text;

#endif
