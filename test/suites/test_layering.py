#!/usr/bin/env python3
"""test_layering -- the C files depend on each other in the order declared.

fdw/whoop_fdw.h's banner lists the files of fdw/ in layers, top down.  A
file may use a function or variable of fdw/whoop_fdw.h only when the file
that defines it stands on a lower line: no call goes sideways or up, so the
files form no cycle.  json-c may appear only in json.c and libcurl only in
http.c.  Every .c file includes postgres.h first and the header does not
include it.  The sources are read as text; no server is needed.
"""

import os
import re
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FDW = os.path.join(ROOT, "fdw")
HEADER = os.path.join(FDW, "whoop_fdw.h")

# what belongs to json-c or to libcurl when it appears in code
LIBRARIES = {
    "json.c": ("json-c", re.compile(
        r"#\s*include\s*[<\"]json(-c)?[/.]|\bjson_(object|tokener|type|c)\w*|\bjson_bool\b")),
    "http.c": ("libcurl", re.compile(r"#\s*include\s*[<\"]curl/|\bcurl_\w+|\bCURL\w*")),
}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def code_only(text):
    """code_only blanks comments and string and character literals, keeping
    line numbers, so that only code is searched."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            out.append(c + " " * (min(j, n) - i - 1) + (c if j < n else ""))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def includes_code(text):
    """includes_code is the code with #include lines kept as they are: the
    names of included files are strings, which code_only blanks."""
    blanked = code_only(text).split("\n")
    for number, line in enumerate(text.split("\n")):
        if re.match(r"\s*#\s*include\b", line):
            blanked[number] = line
    return "\n".join(blanked)


def declared_layers(header_text):
    """declared_layers reads the banner's layer lines (top down): each is a
    run of file names such as "fetch.c pushdown.c" after the comment's star,
    alone on the line or followed by " -- " and what the layer does."""
    banner = header_text.split("*/", 1)[0]
    layers = []
    for line in banner.split("\n"):
        match = re.match(r"\s*\*\s+((?:[a-z_]+\.c[ \t]+)*[a-z_]+\.c)[ \t]*(--|$)", line)
        if match:
            layers.append(match.group(1).split())
    return layers


def declared_names(header_text):
    """declared_names lists the functions and variables the header declares
    extern whose names start with whoop_."""
    code = code_only(header_text)
    names = set()
    for declaration in re.findall(r"\bextern\b[^;]*;", code):
        head = declaration.split("(", 1)[0]
        found = re.findall(r"\b(whoop_\w+)\b", head)
        if found:
            names.add(found[-1])
    return names


def defining_files(name, sources):
    """defining_files returns the files that define NAME: a function whose
    name starts a line and whose parameter list is followed by a body, or a
    variable defined at file level."""
    function = re.compile(r"^%s\s*\([^;{]*\)\s*\{" % re.escape(name), re.M)
    variable = re.compile(r"^(?!extern\b)(?!static\b)[A-Za-z_][\w \t*]*\b%s\b\s*(\[[^\]]*\])?\s*[=;]"
                          % re.escape(name), re.M)
    return sorted(f for f, code in sources.items()
                  if function.search(code) or variable.search(code))


class LayeringTest(unittest.TestCase):
    """Calls between the C files go only downward, in the declared order."""

    @classmethod
    def setUpClass(cls):
        cls.header = read(HEADER)
        cls.files = sorted(f for f in os.listdir(FDW) if f.endswith(".c"))
        cls.texts = {f: read(os.path.join(FDW, f)) for f in cls.files}
        cls.code = {f: code_only(t) for f, t in cls.texts.items()}
        cls.layers = declared_layers(cls.header)
        cls.layer_of = {}
        for number, layer in enumerate(reversed(cls.layers)):
            for f in layer:
                cls.layer_of.setdefault(f, []).append(number)

    def test_banner_declares_every_file_once(self):
        self.assertGreaterEqual(len(self.layers), 3, "no layer lines found in the banner")
        for f in self.files:
            self.assertEqual(len(self.layer_of.get(f, [])), 1,
                             "%s must stand on exactly one layer line of whoop_fdw.h's banner" % f)
        for f in self.layer_of:
            self.assertIn(f, self.files, "the banner names %s, which fdw/ lacks" % f)

    def test_every_declared_name_is_defined_once(self):
        names = declared_names(self.header)
        self.assertGreater(len(names), 40, "too few declarations found: %d" % len(names))
        for name in sorted(names):
            self.assertEqual(len(defining_files(name, self.code)), 1,
                             "%s is defined in %s" % (name, defining_files(name, self.code)))

    def test_calls_go_only_to_lower_layers(self):
        violations = []
        for name in sorted(declared_names(self.header)):
            (home,) = defining_files(name, self.code)
            use = re.compile(r"\b%s\b" % re.escape(name))
            for f, code in self.code.items():
                if f == home:
                    continue
                for match in use.finditer(code):
                    if self.layer_of[f][0] <= self.layer_of[home][0]:
                        line = code.count("\n", 0, match.start()) + 1
                        violations.append("%s:%d uses %s of %s, which is not on a lower layer"
                                          % (f, line, name, home))
                    break
        self.assertEqual(violations, [])

    def test_libraries_stay_behind_their_file(self):
        violations = []
        for owner, (library, pattern) in LIBRARIES.items():
            for f, text in list(self.texts.items()) + [("whoop_fdw.h", self.header)]:
                if f == owner:
                    continue
                match = pattern.search(includes_code(text))
                if match:
                    violations.append("%s uses %s (%s) outside %s"
                                      % (f, library, match.group(0), owner))
        self.assertEqual(violations, [])

    def test_postgres_h_comes_first_and_only_from_the_c_files(self):
        self.assertIsNone(re.search(r"#\s*include\s*\"postgres\.h\"", includes_code(self.header)),
                          "whoop_fdw.h must not include postgres.h")
        for f, text in self.texts.items():
            first = re.search(r"^\s*#\s*include\s*([<\"][^>\"]+[>\"])", text, re.M)
            self.assertIsNotNone(first, "%s includes nothing" % f)
            self.assertEqual(first.group(1), '"postgres.h"',
                             "%s must include postgres.h first" % f)


if __name__ == "__main__":
    unittest.main()
