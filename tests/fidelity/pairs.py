"""The release pairs of the fidelity harness: adjacent releases of pure-Python libraries.

Each pair names the distribution, the two versions, the top-level packages it installs, the
distributions it needs beside it (bundled unchanged in both releases), what a long-running
process does with it before the upgrade (``setup``: imports by name, instances) and the
expressions whose results must be those of a fresh import afterwards (``probes``). ``fast``
pairs (small wheels, a second or two each) are the ones ``tests/fidelity`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    dist: str
    old: str
    new: str
    packages: tuple[str, ...]
    setup: str = ""
    probes: tuple[str, ...] = ()
    needs: tuple[tuple[str, str], ...] = ()
    fast: bool = False

    @property
    def label(self) -> str:
        return f"{self.dist} {self.old} -> {self.new}"


_CLICK_SETUP = """
import click
from click.testing import CliRunner
@click.command()
@click.option("--n", default=1, type=int)
def cli(n):
    click.echo(n * 2)
runner = CliRunner()
"""
_CLICK_PROBES = (
    "runner.invoke(cli, ['--n', '3']).output",
    "runner.invoke(cli, ['--help']).output",
    "click.style('x', fg='red', bold=True)",
    "click.unstyle(click.style('x', fg='red'))",
)
_PACKAGING_SETUP = """
from packaging.version import Version, parse
from packaging.specifiers import SpecifierSet
from packaging.requirements import Requirement
from packaging.markers import Marker
v = Version("1.2.3")
spec = SpecifierSet(">=1.0,!=1.1")
"""
_PACKAGING_PROBES = (
    "v in spec",
    "str(parse('1.0.post1'))",
    "sorted(map(str, [Version('1.0a1'), Version('1.0'), Version('0.9')]))",
    "str(Requirement('name[extra]>=1.0; python_version >= \"3.8\"'))",
    "Marker('python_version >= \"3.8\"').evaluate({'python_version': '3.11'})",
    "list(spec.filter(['0.9', '1.0', '1.1', '2.0']))",
)
_JINJA_SETUP = """
import jinja2
from jinja2 import Environment
env = Environment(autoescape=True)
t = env.from_string("{{ x }}|{{ d|xmlattr }}|{% for i in xs %}{{ i }}{% endfor %}")
"""
_JINJA_PROBES = (
    "t.render(x='<b>', d={'a': 'b'}, xs=[1, 2])",
    "env.from_string('{{ 3 | string }}').render()",
    "env.from_string('{{ d|xmlattr }}').render(d={'a b': 'c'})",
)
_URLLIB3_SETUP = """
import urllib3
from urllib3.util import parse_url, Retry
pool = urllib3.PoolManager()
"""
_URLLIB3_PROBES = (
    "parse_url('http://u@h:80/p?q#f')",
    "Retry(3).new(total=2).total",
    "urllib3.util.make_headers(basic_auth='a:b')",
    "urllib3.HTTPHeaderDict({'A': '1'}).copy()",
)

PAIRS: tuple[Pair, ...] = (
    Pair(
        "idna",
        "3.6",
        "3.7",
        ("idna",),
        fast=True,
        setup="import idna\nfrom idna import encode, decode\nimport idna.codec",
        probes=(
            "encode('ドメイン.テスト')",
            "decode(b'xn--eckwd4c7c.xn--zckzah')",
            "idna.uts46_remap('Königsgäßchen')",
            "'ドメイン.テスト'.encode('idna2008')",
        ),
    ),
    Pair(
        "six",
        "1.16.0",
        "1.17.0",
        ("six",),
        fast=True,
        setup="import six\nfrom six import ensure_str, ensure_binary",
        probes=("ensure_str(b'x')", "ensure_binary('y')", "six.moves.urllib.parse.quote('a b')"),
    ),
    Pair(
        "toml",
        "0.10.1",
        "0.10.2",
        ("toml",),
        fast=True,
        setup="import toml\nfrom toml import loads, dumps",
        probes=("loads('a = 1\\n[b]\\nc = \"d\"\\n')", "dumps({'a': [1, 2], 'b': {'c': 'd'}})"),
    ),
    Pair(
        "wcwidth",
        "0.2.12",
        "0.2.13",
        ("wcwidth",),
        fast=True,
        setup="import wcwidth\nfrom wcwidth import wcswidth",
        probes=("wcswidth('コンニチハ')", "wcwidth.wcwidth('\\u200d')", "wcswidth('\\U0001f468')"),
    ),
    Pair(
        "itsdangerous",
        "2.1.1",
        "2.1.2",
        ("itsdangerous",),
        fast=True,
        setup="from itsdangerous import URLSafeSerializer, Signer\n"
        "s = URLSafeSerializer('k')\nsigner = Signer('k')",
        probes=(
            "s.loads(s.dumps({'a': 1}))",
            "signer.sign('v')",
            "signer.unsign(signer.sign('v'))",
        ),
    ),
    Pair(
        "colorama",
        "0.4.5",
        "0.4.6",
        ("colorama",),
        fast=True,
        setup="import colorama\nfrom colorama import Fore, Style",
        probes=("Fore.RED + 'x' + Style.RESET_ALL",),
    ),
    Pair(
        "tomli",
        "2.0.1",
        "2.0.2",
        ("tomli",),
        setup="import tomli\nfrom tomli import loads",
        probes=("loads('x = 1979-05-27T07:32:00Z\\ny = [1, 2]\\n')",),
    ),
    Pair(
        "attrs",
        "23.1.0",
        "23.2.0",
        ("attr", "attrs"),
        setup="import attr, attrs\n@attrs.define\nclass P:\n    x: int = 1\n"
        "    y: list = attrs.Factory(list)\np = P()",
        probes=("attrs.asdict(p)", "repr(p)", "attrs.evolve(p, x=2)", "attr.fields(P).x.default"),
    ),
    Pair("click", "8.1.6", "8.1.7", ("click",), setup=_CLICK_SETUP, probes=_CLICK_PROBES),
    Pair("click", "8.1.7", "8.1.8", ("click",), setup=_CLICK_SETUP, probes=_CLICK_PROBES),
    Pair(
        "packaging",
        "24.0",
        "24.1",
        ("packaging",),
        setup=_PACKAGING_SETUP,
        probes=_PACKAGING_PROBES,
    ),
    Pair(
        "packaging",
        "24.1",
        "24.2",
        ("packaging",),
        setup=_PACKAGING_SETUP,
        probes=_PACKAGING_PROBES,
    ),
    Pair(
        "chardet",
        "5.1.0",
        "5.2.0",
        ("chardet",),
        setup="import chardet",
        probes=("chardet.detect('héllo wörld, ça va?'.encode('latin-1'))",),
    ),
    Pair(
        "markdown",
        "3.5.1",
        "3.5.2",
        ("markdown",),
        setup="import markdown\nmd = markdown.Markdown(extensions=['toc', 'tables'])",
        probes=(
            "markdown.markdown('# hi\\n\\n*x* [a](b)')",
            "md.reset().convert('| a |\\n|---|\\n| b |')",
        ),
    ),
    Pair(
        "markdown",
        "3.6",
        "3.7",
        ("markdown",),
        setup="import markdown\nmd = markdown.Markdown(extensions=['toc', 'tables'])",
        probes=(
            "markdown.markdown('# hi\\n\\n*x* [a](b)')",
            "md.reset().convert('| a |\\n|---|\\n| b |')",
        ),
    ),
    Pair(
        "jinja2",
        "3.1.3",
        "3.1.4",
        ("jinja2",),
        needs=(("markupsafe", "2.1.5"),),
        setup=_JINJA_SETUP,
        probes=_JINJA_PROBES,
    ),
    Pair(
        "jinja2",
        "3.1.4",
        "3.1.5",
        ("jinja2",),
        needs=(("markupsafe", "2.1.5"),),
        setup=_JINJA_SETUP,
        probes=_JINJA_PROBES,
    ),
    Pair(
        "python-dateutil",
        "2.8.2",
        "2.9.0",
        ("dateutil",),
        needs=(("six", "1.16.0"),),
        setup="import dateutil.parser, dateutil.relativedelta, dateutil.tz\n"
        "from dateutil.parser import parse",
        probes=(
            "parse('2024-01-02T03:04:05Z')",
            "dateutil.relativedelta.relativedelta(months=+1, days=-2)",
            "parse('Sat Oct 11 17:13:46 UTC 2003').isoformat()",
        ),
    ),
    Pair(
        "tabulate",
        "0.8.10",
        "0.9.0",
        ("tabulate",),
        setup="from tabulate import tabulate",
        probes=(
            "tabulate([[1, 2.5], ['x', None]], headers=['a', 'b'])",
            "tabulate([[1, 2]], tablefmt='github')",
        ),
    ),
    Pair(
        "pyparsing",
        "3.1.1",
        "3.1.2",
        ("pyparsing",),
        setup="import pyparsing as pp\nnum = pp.Word(pp.nums)\n"
        "expr = num + pp.ZeroOrMore('+' + num)",
        probes=("expr.parse_string('1 + 2 + 3').as_list()", "str(num)"),
    ),
    Pair(
        "certifi",
        "2024.2.2",
        "2024.6.2",
        ("certifi",),
        setup="import certifi\nfrom certifi import where, contents",
        probes=("len(open(where()).read())", "len(contents())"),
    ),
    Pair("urllib3", "2.2.1", "2.2.2", ("urllib3",), setup=_URLLIB3_SETUP, probes=_URLLIB3_PROBES),
    Pair("urllib3", "2.2.2", "2.2.3", ("urllib3",), setup=_URLLIB3_SETUP, probes=_URLLIB3_PROBES),
    Pair(
        "soupsieve",
        "2.5",
        "2.6",
        ("soupsieve",),
        needs=(("beautifulsoup4", "4.12.3"),),
        setup="import soupsieve as sv",
        probes=(
            "sv.compile('div > p:nth-child(2n+1)').pattern",
            "sv.compile('& > p').pattern",
            "sv.compile(':nonexistent')",
        ),
    ),
    Pair(
        "typing-extensions",
        "4.12.1",
        "4.12.2",
        ("typing_extensions",),
        setup="import typing_extensions as te",
        probes=(
            "te.get_origin(te.Annotated[int, 1])",
            "te.TypedDict('T', {'a': int}).__required_keys__",
        ),
    ),
    Pair(
        "decorator",
        "5.1.0",
        "5.1.1",
        ("decorator",),
        setup="from decorator import decorator\n@decorator\ndef trace(f, *a, **k):\n"
        "    return ('traced', f(*a, **k))\n@trace\ndef add(x, y=1):\n    return x + y",
        probes=("add(2)", "add.__name__"),
    ),
    Pair(
        "more-itertools",
        "10.2.0",
        "10.3.0",
        ("more_itertools",),
        setup="import more_itertools as mi",
        probes=("list(mi.chunked(range(5), 2))", "list(mi.windowed(range(4), 2))"),
    ),
    Pair(
        "cachetools",
        "5.3.2",
        "5.3.3",
        ("cachetools",),
        setup="import cachetools\ncache = cachetools.LRUCache(2)\ncache['a'] = 1",
        probes=("sorted(cache.items())", "cachetools.TTLCache(3, 10).maxsize"),
    ),
    Pair(
        "h11",
        "0.13.0",
        "0.14.0",
        ("h11",),
        setup="import h11\nconn = h11.Connection(h11.CLIENT)",
        probes=(
            "conn.send(h11.Request(method='GET', target='/', headers=[('Host', 'a')]))",
            "conn.our_state",
        ),
    ),
    Pair(
        "sniffio",
        "1.3.0",
        "1.3.1",
        ("sniffio",),
        setup="import sniffio",
        probes=("sniffio.thread_local.name",),
    ),
    Pair(
        "requests",
        "2.34.1",
        "2.34.2",
        ("requests",),
        needs=(
            ("charset-normalizer", "3.4.0"),
            ("idna", "3.7"),
            ("urllib3", "2.2.3"),
            ("certifi", "2024.6.2"),
        ),
        setup="import requests\nfrom requests.utils import requote_uri, parse_header_links\n"
        "session = requests.Session()\nsession.headers['X-App'] = 'svc'",
        probes=(
            "session.prepare_request(requests.Request('GET', 'http://h/p', params={'a': 'b c'}))"
            ".url",
            "requests.Request('POST', 'http://h/', json={'k': [1, 2]}, headers={'X': 'y'})"
            ".prepare().headers",
            "(requote_uri('http://h/a b?c=%zz'), parse_header_links('<http://a/2>; rel=\"next\"'))",
            "requests.Request.__annotations__['headers']",
        ),
    ),
    Pair(
        "pygments",
        "2.19.1",
        "2.19.2",
        ("pygments",),
        setup="from pygments import highlight\nfrom pygments.lexers import get_lexer_by_name\n"
        "from pygments.lexers.python import PythonLexer\n"
        "from pygments.formatters import HtmlFormatter\n"
        "lexer = PythonLexer()\nformatter = HtmlFormatter()\n"
        "lua = get_lexer_by_name('lua')\nsql = get_lexer_by_name('postgresql')",
        probes=(
            "highlight('def f(x):\\n    return x + 1\\n', lexer, formatter)",
            "list(lua.get_tokens('local x = 1 -- c\\n\\n\\nreturn x\\n'))",
            "list(sql.get_tokens('SELECT a::int FROM t WHERE b IS NULL;'))",
            "highlight('SELECT TOP 1 a FROM t', get_lexer_by_name('tsql'), formatter)",
        ),
    ),
    Pair(
        "platformdirs",
        "4.14.8",
        "4.14.9",
        ("platformdirs",),
        setup="import platformdirs\nfrom platformdirs import PlatformDirs\n"
        "dirs = PlatformDirs('svc', 'acme', version='1.0')",
        probes=(
            "(dirs.user_data_dir, dirs.user_cache_dir, dirs.site_config_dir)",
            "platformdirs.user_log_dir('x', False)",
            "platformdirs._android._ANDROID_FOLDER_PATTERN.match('/data/user_de/10/org.a/files/l')",
            "platformdirs.android._USER_ID.search('/data/user_de/10/org.a/')",
        ),
    ),
    Pair(
        "filelock",
        "4.2.11",
        "4.2.12",
        ("filelock",),
        setup="import os\nimport filelock\nfrom filelock import FileLock, Timeout\n"
        "lock = FileLock(os.path.abspath('svc.lock'), timeout=1)\nlock.acquire()",
        probes=(
            "(type(lock).__name__, lock.is_locked, lock.lock_counter, lock.timeout)",
            "[lock.release(), lock.is_locked, lock.acquire() is not None, lock.is_locked]",
            "FileLock(lock.lock_file, timeout=0).acquire(blocking=False)",
        ),
    ),
    Pair(
        "pluggy",
        "0.13.0",
        "0.13.1",
        ("pluggy",),
        setup="""
import pluggy
hookspec = pluggy.HookspecMarker("svc")
hookimpl = pluggy.HookimplMarker("svc")
class Spec:
    @hookspec
    def compute(self, x):
        pass
class Plugin:
    @hookimpl
    def compute(self, x):
        return x * 2
class Wrapper:
    @hookimpl(hookwrapper=True)
    def compute(self, x):
        outcome = yield
        outcome.force_result([r + 1 for r in outcome.get_result()])
pm = pluggy.PluginManager("svc")
pm.add_hookspecs(Spec)
pm.register(Plugin(), name="plugin")
pm.register(Wrapper(), name="wrapper")
""",
        probes=(
            "pm.hook.compute(x=3)",
            "sorted(name for name, _ in pm.list_name_plugin())",
            "pm.subset_hook_caller('compute', [pm.get_plugin('wrapper')])(x=4)",
            "pluggy.PluginManager.register.__doc__",
        ),
    ),
    Pair(
        "iniconfig",
        "2.3.0",
        "2.3.1",
        ("iniconfig",),
        setup="import iniconfig\nfrom iniconfig import IniConfig, ParseError\n"
        "cfg = IniConfig('svc.ini', data='[server]\\nhost = a\\nports =\\n  80\\n  443\\n[e]\\n')",
        probes=(
            "[(s.name, dict(s.items())) for s in cfg]",
            "cfg.get('server', 'ports', convert=str.split)",
            "dict(IniConfig('x.ini', data='\\ufeff[s]\\nk = v\\n  w\\n').sections)",
            "IniConfig('x.ini', data='  cont\\n[s]\\n')",
        ),
    ),
    Pair(
        "tomlkit",
        "0.15.1",
        "0.15.2",
        ("tomlkit",),
        setup="import tomlkit\nfrom tomlkit import parse, dumps\n"
        "doc = parse('[tool]\\nname = \"svc\"  # n\\n[[tool.plugins]]\\nid = 1\\n')",
        probes=(
            "(dumps(doc), doc.unwrap())",
            "dumps({'esc': '\\x1b', 'n': tomlkit.integer('1_000'), 'f': tomlkit.item(-0.0)})",
            "tomlkit.key_value('a = 1 # c')",
            "(lambda d: (d['t'].clear(), d.as_string())[1])"
            "(parse('[[t]]\\nid = 1\\n[u]\\nk = 2\\n'))",
        ),
    ),
    Pair(
        "python-dotenv",
        "1.2.3",
        "1.2.4",
        ("dotenv",),
        setup="import io\nimport dotenv\nfrom dotenv import dotenv_values\n"
        "from dotenv.main import DotEnv\n"
        "env = DotEnv(None, stream=io.StringIO('A=1\\nB=\"two words\"\\nC=${A}-x\\n'))",
        probes=(
            "env.dict()",
            "dotenv_values(stream=io.StringIO('A=1\\nB= # comment\\nC=#novalue\\nD=${A}x\\n'))",
            "list(dotenv.parser.parse_stream(io.StringIO('K= # c\\nL=v\\n')))",
        ),
    ),
    Pair(
        "asgiref",
        "3.12.0",
        "3.12.1",
        ("asgiref",),
        setup="""
import asyncio
from asgiref.sync import sync_to_async, async_to_sync
from asgiref.local import Local
local = Local()
def read_local():
    return getattr(local, "value", None)
read_async = sync_to_async(read_local)
async def set_and_read():
    local.value = "set in async"
    return await read_async()
async def double(x):
    return x * 2
double_sync = async_to_sync(double)
""",
        probes=(
            "asyncio.run(set_and_read())",
            "double_sync(21)",
            "asyncio.run(sync_to_async(lambda: 1 + 1, thread_sensitive=False)())",
        ),
    ),
    Pair(
        "blinker",
        "1.8.1",
        "1.8.2",
        ("blinker",),
        setup="""
import blinker
from blinker import signal, Namespace
received = []
started = signal("started")
def on_started(sender, **kw):
    received.append((sender, sorted(kw.items())))
    return "ok"
started.connect(on_started)
ns = Namespace()
done = ns.signal("done")
""",
        probes=(
            "([r for _, r in started.send('svc', n=1)], received[-1])",
            "(started.has_receivers_for('svc'), bool(done.receivers), done is ns.signal('done'))",
            "blinker.Signal.send.__annotations__['_async_wrapper']",
        ),
    ),
)
