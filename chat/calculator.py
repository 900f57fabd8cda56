"""Exact arithmetic on a short expression, every step sized before it is computed: what the
`calculate` tool (tools.py) runs, in a child process that runs this file as its main module
(`python -I -S -c <this source>`, the expression on stdin, the answer on stdout). Pure Python,
no Django, no imports of the project.

Why the bounds: a big-integer operation holds the GIL for as long as it takes and no thread can
be interrupted, so one `(1/(9**1000)**4)**-1000` once stalled every request of the process for
seconds. Here each operation is refused unless the bit lengths of its operands' numerators and
denominators bound its result within MAX_BITS, so no step costs more than a few products and a
gcd of MAX_BITS-bit integers, and MAX_NODES bounds the number of steps. A number is never
sized by printing it (Python refuses to print an int over 4,300 digits): MAX_BITS keeps every
printed integer under that. The child also limits its own CPU time and memory (`limit_self`),
so the kernel stops it should a bound here ever be wrong.
"""

import ast
import math
import operator
import re
import resource
import sys
from fractions import Fraction

MAX_LENGTH = 1000  # characters of an expression
MAX_NODES = 400  # syntax-tree nodes of an expression, operators included
MAX_BITS = 13_000  # of any numerator or denominator: at most 3,914 digits
CPU_SECONDS = 1  # the child's CPU time, enforced by the kernel (SIGXCPU, then SIGKILL)
MEMORY_BYTES = 256 * 2**20  # the child's address space


class Refused(ValueError):
    """Not arithmetic, or too large to compute within the bounds."""


def evaluate(expression: str) -> Fraction:
    """The exact value of an arithmetic expression (`^` is a power); Refused otherwise."""
    if len(expression) > MAX_LENGTH:
        raise Refused(f"the expression is too long ({MAX_LENGTH} characters at most)")
    source = expression.replace("^", "**")
    tree = ast.parse(source, mode="eval")
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise Refused(f"the expression has too many parts ({MAX_NODES} at most)")
    return _value(tree.body, source)


def answer(expression: str) -> str:
    """The tool's answer: `expression = value`, or why it cannot be calculated."""
    try:
        return f"{expression} = {_exact(evaluate(expression))}"
    except (SyntaxError, ValueError, ZeroDivisionError, MemoryError) as exc:
        reason = "division by zero" if isinstance(exc, ZeroDivisionError) else exc
        if isinstance(exc, MemoryError):
            reason = "the numbers are too large"
        return f"Cannot calculate {expression!r}: {reason}"


def _value(node: ast.AST, source: str) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _literal(node.value, ast.get_source_segment(source, node) or "")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _value(node.operand, source)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATIONS:
        left, right = _value(node.left, source), _value(node.right, source)
        operation, size = _OPERATIONS[type(node.op)]
        numerator_bits, denominator_bits = size(_bits(left), _bits(right), right)
        if max(numerator_bits, denominator_bits) > MAX_BITS:
            raise Refused(f"a number would be too large (over {MAX_BITS:,} bits)")
        return Fraction(operation(left, right))
    raise Refused(f"only numbers and + - * / // % ** ( ) are allowed, not {ast.dump(node)[:40]}")


_DECIMAL = re.compile(r"(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?")
_LOG2_10 = math.log2(10)


def _literal(value: float, text: str) -> Fraction:
    """A number as written: an int as Python read it, a decimal from its text (Python reads
    it as the nearest float, so 0.1 would not be 1/10), sized before it is made."""
    if isinstance(value, int):
        exact = Fraction(value)
    else:
        written = _DECIMAL.fullmatch(text.replace("_", ""))
        if written is None:
            raise Refused(f"cannot read the number {text!r}")
        whole, fraction, exponent = written.groups()
        digits = int((whole or "") + (fraction or "") or "0")
        scale = int(exponent or "0") - len(fraction or "")  # value = digits * 10**scale
        if digits.bit_length() + math.ceil(abs(scale) * _LOG2_10) > MAX_BITS:
            raise Refused(f"the number {text[:40]} is too large (over {MAX_BITS:,} bits)")
        exact = Fraction(digits * 10**scale) if scale >= 0 else Fraction(digits, 10**-scale)
    if max(_bits(exact)) > MAX_BITS:
        raise Refused(f"a number is too large (over {MAX_BITS:,} bits)")
    return exact


def _bits(value: Fraction) -> tuple[int, int]:
    return abs(value.numerator).bit_length(), value.denominator.bit_length()


# The bits of each operation's result before it is reduced (an upper bound on what computing
# it handles), from the operands' (numerator bits, denominator bits): a/b op c/d.
def _sum_size(left: tuple[int, int], right: tuple[int, int], _: Fraction) -> tuple[int, int]:
    (a, b), (c, d) = left, right
    return max(a + d, c + b) + 1, b + d


def _product_size(left: tuple[int, int], right: tuple[int, int], _: Fraction) -> tuple[int, int]:
    (a, b), (c, d) = left, right
    return a + c, b + d


def _quotient_size(left: tuple[int, int], right: tuple[int, int], _: Fraction) -> tuple[int, int]:
    (a, b), (c, d) = left, right
    return a + d, b + c


def _floor_size(left: tuple[int, int], right: tuple[int, int], _: Fraction) -> tuple[int, int]:
    (a, b), (c, d) = left, right
    return max(a + d, b + c), 1  # (a*d) // (b*c)


def _remainder_size(left: tuple[int, int], right: tuple[int, int], _: Fraction) -> tuple[int, int]:
    (a, b), (c, d) = left, right
    return max(a + d, c + b), b + d  # ((a*d) % (c*b)) / (b*d)


def _power_size(
    left: tuple[int, int], right: tuple[int, int], exponent: Fraction
) -> tuple[int, int]:
    if exponent.denominator != 1:
        raise Refused("only whole powers are exact")
    (a, b), (c, _) = left, right
    if a <= 1 and b == 1:  # 0, 1 or -1: as cheap as the exponent is long
        return 1, c
    return max(a, b) * abs(exponent.numerator), max(a, b) * abs(exponent.numerator)


_OPERATIONS = {
    ast.Add: (operator.add, _sum_size),
    ast.Sub: (operator.sub, _sum_size),
    ast.Mult: (operator.mul, _product_size),
    ast.Div: (operator.truediv, _quotient_size),
    ast.FloorDiv: (operator.floordiv, _floor_size),
    ast.Mod: (operator.mod, _remainder_size),
    ast.Pow: (operator.pow, _power_size),
}


def _exact(value: Fraction) -> str:
    """The value written out: an integer, a terminating decimal to its last digit (integer
    arithmetic, no rounding context), or else a fraction with an approximation."""
    numerator, denominator = value.numerator, value.denominator
    if denominator == 1:
        return str(numerator)
    twos = (denominator & -denominator).bit_length() - 1
    rest, fives = denominator >> twos, 0
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    places = max(twos, fives)
    # n/d = n * (10**places / d) / 10**places; the integer printed has at most this many bits.
    scaled_bits = abs(numerator).bit_length() + (places - twos) + math.ceil((places - fives) * 2.33)
    if rest == 1 and scaled_bits <= MAX_BITS:
        digits = str(abs(numerator) * 2 ** (places - twos) * 5 ** (places - fives))
        digits = digits.rjust(places + 1, "0")
        sign = "-" if numerator < 0 else ""
        return f"{sign}{digits[:-places]}.{digits[-places:]}"  # no trailing 0: n/d is reduced
    try:
        about = f" (about {float(value):.12g})"
    except OverflowError:
        about = ""
    return f"{value.numerator}/{value.denominator}{about}"


def limit_self() -> None:
    """Cap this process's CPU time and memory: the kernel ends it past either."""
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS + 1))
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def main() -> None:
    """The child: limits first, then the expression from stdin, the answer to stdout."""
    limit_self()
    sys.stdout.write(answer(sys.stdin.read()))


if __name__ == "__main__":
    main()
