"""C syntax for the writers: banners, arrays, literals, names, templates.

Nothing here knows about models: it formats values it is given. Every identifier a writer
emits goes through :class:`Names`, which checks it carries the prefix and is neither a C/C++
keyword nor a name the C or C++ standard library reserves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from importlib import resources

import jinja2
import numpy as np

from firmware_export.errors import FirmwareExportError

C_KEYWORDS = frozenset(
    """auto break case char const continue default do double else enum extern float for goto
    if inline int long register restrict return short signed sizeof static struct switch
    typedef union unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex
    _Generic _Imaginary _Noreturn _Static_assert _Thread_local alignas alignof bool
    constexpr false nullptr static_assert thread_local true typeof typeof_unqual _BitInt
    _Decimal32 _Decimal64 _Decimal128""".split()  # noqa: SIM905
)
CXX_KEYWORDS = frozenset(
    """and and_eq asm bitand bitor catch char8_t char16_t char32_t class compl concept
    consteval constinit const_cast co_await co_return co_yield decltype delete dynamic_cast
    explicit export friend mutable namespace new noexcept not not_eq operator or or_eq
    private protected public reflexpr reinterpret_cast requires static_cast template this
    throw try typeid typename using virtual wchar_t xor xor_eq final override import
    module""".split()  # noqa: SIM905
)
#: Prefixes of names reserved by the C standard library ("future library directions") or
#: by POSIX headers the generated code may meet; an identifier starting with one of these
#: followed by the given character class is rejected.
_RESERVED_PATTERNS = (
    re.compile(r"^_"),  # leading underscore: reserved at file scope
    re.compile(r"__"),  # double underscore: reserved in C++
    re.compile(r"^(is|to|str|mem|wcs)[a-z]"),  # <ctype.h>, <string.h>, <wchar.h>
    re.compile(r"^E[0-9A-Z]"),  # <errno.h>
    re.compile(r"^(SIG|SIG_)[A-Z]"),  # <signal.h>
    re.compile(r"^LC_[A-Z]"),  # <locale.h>
    re.compile(r"^(PRI|SCN)[a-zX]"),  # <inttypes.h>
    re.compile(r"^U?INT[0-9A-Z_]*_(MAX|MIN|C)$"),  # <stdint.h>
    re.compile(r"^(atomic|memory_order|cnd|mtx|thrd|tss)_"),  # <stdatomic.h>, <threads.h>
    re.compile(r"^(FLT|DBL|LDBL)_"),  # <float.h>
)
_PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


#: Headers a C, C++, Cortex-M, x86 or Arduino build may include by name. The generated public
#: header is ``<prefix>.h`` and the build puts its folder on the include path, so a prefix
#: spelled like one of these would hide the system header (compared without case: macOS and
#: Windows file systems ignore it).
SYSTEM_HEADERS = frozenset(
    {
        # C99, C11, C23
        *("assert", "complex", "ctype", "errno", "fenv", "float", "inttypes", "iso646"),
        *("limits", "locale", "math", "setjmp", "signal", "stdalign", "stdarg", "stdatomic"),
        *("stdbit", "stdbool", "stdckdint", "stddef", "stdint", "stdio", "stdlib"),
        *("stdnoreturn", "string", "tgmath", "threads", "time", "uchar", "wchar", "wctype"),
        # POSIX and newlib headers firmware often includes
        *("unistd", "fcntl", "strings", "alloca", "malloc", "memory", "reent", "newlib"),
        *("sys", "endian", "semihost", "syscalls"),
        # compiler intrinsics (Arm and x86)
        *("arm_acle", "arm_neon", "arm_mve", "arm_fp16", "arm_bf16", "arm_cmse", "arm_sve"),
        *("immintrin", "xmmintrin", "emmintrin", "pmmintrin", "tmmintrin", "smmintrin"),
        *("nmmintrin", "wmmintrin", "avxintrin", "avx2intrin", "x86intrin", "intrin", "cpuid"),
        *("mm_malloc", "mmintrin", "ammintrin", "float16"),
        # CMSIS and CMSIS-NN, the Cortex-M core headers
        *("cmsis_compiler", "cmsis_gcc", "cmsis_armclang", "cmsis_version", "arm_math"),
        *("arm_nnfunctions", "arm_nnsupportfunctions", "arm_nn_types", "arm_math_types"),
        *("core_cm0", "core_cm0plus", "core_cm3", "core_cm4", "core_cm7", "core_cm33"),
        *("core_cm55", "core_cm85", "mpu_armv7", "mpu_armv8", "system_armcm4"),
        # Arduino core headers a sketch includes by name
        *("arduino", "wprogram", "print", "stream", "wire", "spi", "hardwareserial"),
    }
)


def check_prefix(prefix: str) -> str:
    """Validate ``--prefix``; return it unchanged or raise with the reason."""
    if not _PREFIX_RE.match(prefix):
        raise FirmwareExportError(
            f"--prefix {prefix!r} is not usable: it must be a C identifier of 1-32 characters "
            "starting with a letter (letters, digits, underscores)"
        )
    if prefix.endswith("_") or "__" in prefix:
        raise FirmwareExportError(
            f"--prefix {prefix!r} must not end with '_' or contain '__' "
            "(the generated names would be reserved in C++)"
        )
    if prefix in C_KEYWORDS or prefix in CXX_KEYWORDS:
        raise FirmwareExportError(f"--prefix {prefix!r} is a C/C++ keyword")
    for probe in (f"{prefix}_infer", prefix.upper() + "_OK"):
        why = reserved_reason(probe)
        if why:
            raise FirmwareExportError(
                f"--prefix {prefix!r} makes names like {probe} that are "
                f"{why}; choose another prefix"
            )
    if prefix.lower() in SYSTEM_HEADERS:
        raise FirmwareExportError(
            f"--prefix {prefix!r} would name the generated header {prefix}.h, which hides the "
            f"system header <{prefix.lower()}.h>; choose another prefix"
        )
    return prefix


def reserved_reason(name: str) -> str | None:
    """Why ``name`` must not be emitted, or None when it is fine."""
    if name in C_KEYWORDS:
        return "a C keyword"
    if name in CXX_KEYWORDS:
        return "a C++ keyword"
    for pat in _RESERVED_PATTERNS:
        if pat.search(name):
            return f"reserved by the C/C++ standard library ({pat.pattern})"
    return None


class Names:
    """The identifiers a writer emits, all checked against the prefix and reserved words."""

    def __init__(self, prefix: str) -> None:
        self.prefix = check_prefix(prefix)
        self.upper = prefix.upper()
        self.emitted: list[str] = []

    def __call__(self, suffix: str) -> str:
        """``prefix_suffix`` (functions, types, objects)."""
        return self._add(f"{self.prefix}_{suffix}")

    def macro(self, suffix: str) -> str:
        """``PREFIX_SUFFIX`` (macros, enumerators)."""
        return self._add(f"{self.upper}_{suffix.upper()}")

    def _add(self, name: str) -> str:
        why = reserved_reason(name)
        if why:
            raise FirmwareExportError(
                f"generated identifier {name} is {why}; choose another --prefix"
            )
        if not (name.startswith(self.prefix + "_") or name.startswith(self.upper + "_")):
            raise FirmwareExportError(f"generated identifier {name} lacks the prefix")
        if name not in self.emitted:
            self.emitted.append(name)
        return name


def comment_text(text: str) -> str:
    r"""``text`` made inert inside any generated comment (C ``/* */`` and ``//``, ``#`` in a
    Makefile or CMake, ``.ino``): printable ASCII only, so a file name cannot end the comment
    with a newline or ``*/``, open a nested ``/*``, continue the line with a trailing
    backslash or the ``??/`` trigraph, nor smuggle control codes. Everything else is written
    as an escape (``\x0a``, ``\u00e9``), which reads the same to a person."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\x5c")
        elif " " <= ch <= "~":
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    safe = "".join(out)
    return safe.replace("*/", "*\\x2f").replace("/*", "/\\x2a").replace("??", "?\\x3f")


def banner(lines: Sequence[str], style: str = "c") -> str:
    """A comment block; ``style`` is ``c`` (/* */) or ``hash`` (#). Every line goes through
    :func:`comment_text`, so names from the user's file system cannot escape the comment."""
    safe = [comment_text(ln) for ln in lines]
    if style == "hash":
        return "\n".join(f"# {ln}".rstrip() for ln in safe)
    body = "\n".join(f" * {ln}".rstrip() for ln in safe)
    return f"/*\n{body}\n */"


def c_float(x: float) -> str:
    """A float32 literal that round-trips exactly (``%.9g`` + ``f``)."""
    text = f"{float(np.float32(x)):.9g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def c_int(v: int) -> str:
    """An int literal; INT32_MIN is spelled so that it stays an int32_t expression."""
    v = int(v)
    if v == -(1 << 31):
        return "(-2147483647 - 1)"
    return str(v)


def c_values(values: Iterable[int], per_line: int = 16, indent: str = "    ") -> str:
    """Comma-separated integers wrapped ``per_line`` to a line."""
    vals = [c_int(v) for v in values]
    if not vals:
        return indent + "0"
    width = max(len(v) for v in vals)
    lines = []
    for i in range(0, len(vals), per_line):
        chunk = vals[i : i + per_line]
        lines.append(indent + ", ".join(v.rjust(width) for v in chunk))
    return ",\n".join(lines)


_ENV: jinja2.Environment | None = None


def env() -> jinja2.Environment:
    """The Jinja2 environment over ``firmware_export/c`` and ``firmware_export/templates``."""
    global _ENV
    if _ENV is None:
        root = resources.files("firmware_export")
        _ENV = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(root / "c"), str(root / "templates")]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        _ENV.filters["c_values"] = c_values
        _ENV.filters["c_float"] = c_float
        _ENV.filters["c_int"] = c_int
    return _ENV


def render(template: str, **context: object) -> str:
    """Render a template; normalise to one trailing newline."""
    return env().get_template(template).render(**context).rstrip("\n") + "\n"
