/*
 * graders.h - Biomni-Eval1's grading rules, one function per rule.
 *
 * The rules are those of biomni/eval/biomni_eval1.py (_compute_reward), read
 * for facts and re-implemented here:
 *
 *   crispr_delivery              strip + lower-case, exact (letter a-f)
 *   gwas_causal_gene*            strip + upper-case, exact (gene symbol)
 *   gwas_variant_prioritization  strip, exact, case-sensitive (rsID)
 *   lab_bench*  (dbqa, seqqa)    strip + upper-case, exact (letter)
 *   hle                          strip + upper-case, exact (letter)
 *   rare_disease_diagnosis       answer: json.loads, else ast.literal_eval;
 *                                truth: json.loads; 1 if both .get("OMIM_ID")
 *                                are equal (Python ==; both absent counts as
 *                                equal, as upstream); anything raising: 0
 *   screen_gene_retrieval        strip + upper-case, exact (gene symbol)
 *   patient_gene_detection       answer parsed as above; .get("causal_gene", []),
 *                                a non-list wrapped in a list; truth split on
 *                                "," and stripped when it holds a comma, else
 *                                taken whole; 1 if the lists share an element
 *                                (set() of unhashable elements raises: 0)
 *
 * Names are matched like upstream: exact names, or the prefixes
 * "gwas_causal_gene" and "lab_bench". "strip" is Python's str.strip() (all
 * Unicode white space); upper/lower cover ASCII letters only (gene symbols,
 * rsIDs and option letters are ASCII).
 *
 * Training mode differs in one rule only: crispr_delivery gives partial
 * credit (SkyRL's Biomni task: each option letter has a reference score 0, 1
 * or 2 and the reward is score/2), when the task supplies the per-option
 * scores; without them it is the exact rule.
 */
#ifndef VIV_GRADERS_H
#define VIV_GRADERS_H

#include <stddef.h>

#include <cjson/cJSON.h>

enum grade_mode { GRADE_EVAL = 0, GRADE_TRAIN = 1 };

/* 1 if `rule` names an Eval1 grading rule. */
int grader_known(const char *rule);

/* The reward in [0, 1] for `answer` (the solution text) against `truth`.
 * option_scores: for crispr_delivery in training mode, an object such as
 * {"a":0,"b":1,"c":2,...} (may be NULL). Returns -1 with `err` for an
 * unknown rule (upstream raises ValueError there). */
double grade(const char *rule, const char *answer, const char *truth, enum grade_mode mode,
             const cJSON *option_scores, char *err, size_t errlen);

/* Python's str.strip() on UTF-8: a malloc'd copy. */
char *py_strip(const char *s);

#endif
