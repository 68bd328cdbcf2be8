#!/usr/bin/env python3
"""gen_tokens_ref.py - reference token ids for tests/test_tokenizer.c (tests/data/tokens_extra.jsonl).

An independent Python implementation of the CLIP tokenizer as documented in
tests/data/clip_golden/README.md (the "tokens.jsonl" section): html.unescape twice, strip,
collapse whitespace runs (re's \\s) to one space, strip, str.lower(), split with the regex
module's pattern (IGNORECASE), UTF-8 bytes through bytes_to_unicode, "</w>" on the last
symbol, BPE with the first 48894 merges of bpe_simple_vocab_16e6.txt.gz. The BPE below is a
plain "merge the lowest-ranked adjacent pair everywhere, repeat" loop over Python lists,
written for this test; nothing is imported from OpenAI's code.

Output, one JSON object per line:
  {"kind": "encode", "text", "clean", "ids", "n_ids", "truncated", "tokens77", "decoded"}
    clean  = the text after unescape/whitespace/lower (what the pre-tokenizer sees)
    tokens77 = [SOT] + ids + [EOT] zero padded to 77; if longer, the first 77 with the
               last replaced by EOT (clip.tokenize with truncate=True)
    decoded = decode(ids): the tokens' strings joined, mapped back to bytes, decoded as
              UTF-8 with errors="replace", "</w>" -> " "
  {"kind": "decode", "ids", "decoded"}  - decode of arbitrary id sequences (invalid UTF-8)

Usage: python3 tests/ref/gen_tokens_ref.py [path/to/bpe_simple_vocab_16e6.txt.gz] > tests/data/tokens_extra.jsonl
(default path: clip_rerank/vocab/ in this repository). Needs the `regex` module.
"""
import gzip
import html
import json
import os
import random
import re
import sys

import regex

N_MERGES = 48894
CONTEXT = 77
PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


def byte_symbols():
    """byte -> symbol character, and the vocabulary order of the 256 bytes."""
    printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or b >= 0xAE]
    others = [b for b in range(256) if b not in printable]
    char = {b: chr(b) for b in printable}
    for i, b in enumerate(others):
        char[b] = chr(256 + i)
    return char, printable + others


class Reference:
    def __init__(self, merges_path):
        lines = gzip.open(merges_path).read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : 1 + N_MERGES]]
        assert all(len(m) == 2 for m in merges)
        self.char, order = byte_symbols()
        self.byte_of = {c: b for b, c in self.char.items()}
        vocab = [self.char[b] for b in order] + [self.char[b] + "</w>" for b in order]
        vocab += [a + b for a, b in merges] + ["<|startoftext|>", "<|endoftext|>"]
        self.id_of = {s: i for i, s in enumerate(vocab)}
        self.vocab = vocab
        self.rank = {m: i for i, m in enumerate(merges)}
        self.sot, self.eot = self.id_of["<|startoftext|>"], self.id_of["<|endoftext|>"]

    @staticmethod
    def clean(text):
        text = html.unescape(html.unescape(text)).strip()
        text = re.sub(r"\s+", " ", text).strip()
        return text.lower()

    def bpe(self, piece):
        syms = [self.char[b] for b in piece.encode("utf-8")]
        syms[-1] += "</w>"
        while len(syms) > 1:
            best = None
            for i in range(len(syms) - 1):
                r = self.rank.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best):
                    best = r
            if best is None:
                break
            a, b = self.pair_of(best)
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            syms = out
        return [self.id_of[s] for s in syms]

    def pair_of(self, rank):
        if not hasattr(self, "_pairs"):
            self._pairs = {v: k for k, v in self.rank.items()}
        return self._pairs[rank]

    def encode(self, text):
        ids = []
        for piece in PATTERN.findall(self.clean(text)):
            if piece == "<|startoftext|>":
                ids.append(self.sot)
            elif piece == "<|endoftext|>":
                ids.append(self.eot)
            else:
                ids.extend(self.bpe(piece))
        return ids

    def tokens77(self, ids):
        toks = [self.sot] + ids + [self.eot]
        truncated = len(toks) > CONTEXT
        if truncated:
            toks = toks[:CONTEXT]
            toks[-1] = self.eot
        return toks + [0] * (CONTEXT - len(toks)), truncated

    def decode(self, ids):
        s = "".join(self.vocab[i] for i in ids)
        raw = bytearray(self.byte_of[c] for c in s)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ")


def strings():
    s = [
        # accents, NFC and NFD
        "café au lait", "cafe\u0301 au lait", "Ångström", "A\u030angstro\u0308m", "Crème Brûlée",
        "ñandú", "n\u0303andu\u0301", "Ça va? Très bien.", "ÀÉÎÕÜ àéîõü", "Dvořák", "Łódź",
        # CJK, kana, hangul
        "東京タワーの夜景", "北京欢迎你", "漢字かな交じり文", "カタカナ ひらがな", "한국어 텍스트입니다",
        "中文，标点。符号！", "日本語テキスト（全角括弧）",
        # emoji
        "👍", "👍🏽 thumbs up", "👨\u200d👩\u200d👧\u200d👦 family", "🇫🇷🇩🇪🇯🇵", "🏳️\u200d🌈 flag",
        "I ❤️ NY", "🧑🏾\u200d🚀 astronaut", "1️⃣ keycap", "😀😃😄😁", "a🐱b", "🐶🐶 🐶",
        # digits and numbers
        "12345", "3.14159", "1,000,000", "٣٤٥ arabic-indic", "१२३ devanagari digits", "Ⅻ roman",
        "½ cup", "x²+y²=z²", "H₂O", "①②③", "2nd 3rd 4th", "$100.00", "€5 and ¥300", "3am-5pm",
        # punctuation runs
        "!!!???", "...", "—–-", "«quoted»", "--->", "(*&^%$#@!)", "a...b", "¿qué?", "¡hola!",
        "C++ & C#", "50% off!!!", "e=mc^2", "https://example.com/a?b=c&d=e", "user@mail.com",
        # contractions, upper case, the IGNORECASE long s
        "IT'S", "WE'LL GO", "I'M HERE", "THEY'RE", "YOU'VE", "HE'D", "DON'T", "it's", "'s'",
        "rock'n'roll", "o'clock", "'''", "it'ſ", "'ſtart", "’s curly", "'S 'LL 'RE",
        # special tokens and look-alikes
        "<|startoftext|>", "<|endoftext|>", "a<|endoftext|>b", "!<|endoftext|>", "<|StartOfText|> hi",
        "<|startoftext|><|endoftext|>", "<|endoftext", "<|ſtartoftext|>", "</w> literal",
        # HTML entities
        "&amp;", "&amp;amp;", "&amp;amp;amp;", "&lt;b&gt;bold&lt;/b&gt;", "&#x41;", "&#65;BC",
        "a&#0;b", "&#128;", "&#129;", "&#x80;", "&#xD800;", "&#x110000;", "&#99999999999999999999;",
        "a&#1;b", "a&#xFFFE;b", "&#x1F600;", "&notit;", "&notin;", "&notin", "a&nbsp;b", "&nbsp",
        "&copy 2024", "&ampx", "&AMP;", "&NotEqualTilde;", "&fjlig;", "&#x26;amp;", "&&&", "& ;",
        "&#;", "&#x;", "&unknown;", "&a", "&;", "&" + "abcdefghij" * 4, "&#38;#38;", "a&#13;b",
        "a&#x2003;b", "a&#12288;b", "R&D", "AT&T", "&lt3", "fish &chips", "&times2", "&copy;2024",
        "&reg", "&euro;", "&ETH;&eth", "&#x3A3;&#x3A3;",
        # whitespace of all kinds
        "a\u00a0b", "a\u2003b", "a\u3000b", "a\tb", "a\x1cb", "a\x1fb", "a\x85b", "a\u200bb",
        "a\u2028b", "a\u180eb", "   ", "", " \t\n ", "a\r\nb", "a\u205fb\u202fc", "\u00a0lead and trail\u3000",
        # Turkish, Greek, German
        "İstanbul", "İSTANBUL", "ıi", "DİYARBAKIR", "ΟΔΟΣ", "ΣΑΣ", "Σ", "ΑΣ.", "ΑΣ.Α", "ΑΣ'Α",
        "ΑΣ:Β", "ªΣ", "🄰Σ", "ΑΣ\u0308", "ὈΔΥΣΣΕΎΣ", "ΣΟΦΙΑ", "καλημέρα ΚΌΣΜΕ", "Straße",
        "STRASSE", "ẞ", "Maß",
        # combining marks and scripts
        "a\u0345b", "ᾼ", "e\u0301\u0301", "\u0301 leading", "Z\u0337\u0322a\u0338l\u0336g\u0335o\u0334",
        "नमस्ते दुनिया", "हिन्दी", "مرحبا بالعالم", "مَرْحَبًا", "שלום עולם", "สวัสดีครับ",
        "Привет, мир!", "ქართული", "Հայերեն",
        # letter-like oddities
        "ﬁne ﬂour", "ＡＢＣ ｄｅｆ", "Ⓐⓑ", "ǅ ǈ", "ﬅ", "\u212a kelvin", "\u2126 ohm", "ſ", "𝐀𝐁𝐂",
        "ǰ", "\x7f\x01", "\ue000 private", "\u0378 unassigned", "\ufdd0", "\U00011f04\U00011f05 kawi",
        "Hello,World!123abc", "abc123def",
        # long words
        "a" * 300, "supercalifragilisticexpialidocious" * 5, "ab" * 200, "漢" * 100, "😀" * 50,
        "pneumonoultramicroscopicsilicovolcanoconiosis",
    ]
    rnd = random.Random(20240501)
    words = "a photo of the red blue small big cat dog car tree house street under over near " \
            "with painting digital art sunny day night city river mountain".split()
    s.append(" ".join(rnd.choice(words) for _ in range(100)))
    s.append("a photo of " * 30)
    s.append(" ".join(str(i) for i in range(100)))
    s.append(", ".join(rnd.choice(words) for _ in range(40)) + "!")
    s.append("x" * 74)
    s.append(" ".join(["ab"] * 75))
    s.append(" ".join(["ab"] * 76))
    return s


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "clip_rerank", "vocab",
                                                                 "bpe_simple_vocab_16e6.txt.gz")
    ref = Reference(path)
    out = sys.stdout
    for text in strings():
        ids = ref.encode(text)
        t77, truncated = ref.tokens77(ids)
        rec = {"kind": "encode", "text": text, "clean": ref.clean(text), "ids": ids, "n_ids": len(ids),
               "truncated": truncated, "tokens77": t77, "decoded": ref.decode(ids)}
        out.write(json.dumps(rec, ensure_ascii=True) + "\n")
    rnd = random.Random(7)
    _, order = byte_symbols()

    def byte_ids(bs, eow_last=True):
        ids = [order.index(b) for b in bs]
        if eow_last:
            ids[-1] += 256
        return ids

    cases = [[], [ref.sot, 320, ref.eot], list(range(0, 512, 37)),
             byte_ids([0xE2, 0x82]), byte_ids([0xE2, 0x82, 0xAC]), byte_ids([0xF0, 0x9F, 0x98], False),
             byte_ids([0xED, 0xA0, 0x80]), byte_ids([0xC0, 0x80]), byte_ids([0xFF, 0x41]),
             byte_ids([0xF4, 0x90, 0x80, 0x80]), byte_ids([0xE0, 0x80, 0xAF]), byte_ids([0xF0, 0x9F, 0x41])]
    for _ in range(30):
        cases.append([rnd.randrange(512) for _ in range(rnd.randrange(1, 12))])
    for _ in range(10):
        cases.append([rnd.randrange(len(ref.vocab)) for _ in range(rnd.randrange(1, 6))])
    for ids in cases:
        out.write(json.dumps({"kind": "decode", "ids": ids, "decoded": ref.decode(ids)}, ensure_ascii=True) + "\n")


if __name__ == "__main__":
    main()
