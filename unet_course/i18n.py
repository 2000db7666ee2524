"""Messages in the reader's language, through the standard gettext machinery.

Every message the course's code shows a student or an instructor (test results and hints,
feedback notes, the summary table, errors of the data and grading commands) is written in
English in the code, wrapped in :func:`_` (or marked with :func:`N_` where it is defined and
translated where it is shown). The English text is the message id; the translations are gettext
catalogues of the domain ``unet_course`` shipped with this package
(``locale/<lang>/LC_MESSAGES/unet_course.mo``, compiled from the ``.po`` beside it by
``make messages``, which runs Babel's extract, update and compile).

The language, first that applies:

1. ``UNET_COURSE_LANG`` (``zh_CN``, ``en``, ...): an explicit course setting; the Chinese
   edition's ``nbgrader_config.py`` sets it for everything that grades that edition;
2. the open notebook's own language (metadata ``unet_course.language``, which each edition's
   generated notebook carries), when the kernel can find the notebook (JupyterLab names it in
   ``JPY_SESSION_NAME``; nbgrader runs the kernel in the notebook's folder);
3. the usual locale variables ``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``.

A language without a catalogue (English included) shows the English text.

Examples
--------
>>> import os
>>> os.environ["UNET_COURSE_LANG"] = "zh_CN"
>>> _("All tests passed")
'全部测试通过'
>>> os.environ["UNET_COURSE_LANG"] = "en"
>>> _("All tests passed")
'All tests passed'
>>> del os.environ["UNET_COURSE_LANG"]
"""

from __future__ import annotations

import functools
import gettext
import json
import os
from pathlib import Path

DOMAIN = "unet_course"
LOCALE_DIR = Path(__file__).with_name("locale")
LANGUAGE_ENV = "UNET_COURSE_LANG"
METADATA = "unet_course"  # notebook metadata: {"unet_course": {"language": "zh_CN"}}
LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")
ENVIRONMENT = (LANGUAGE_ENV, *LOCALE_VARIABLES)  # what a grading kernel needs to speak the course's language


def N_(message: str) -> str:  # noqa: N802 - gettext's name for "mark for translation, translate later"
    """Mark ``message`` for extraction; it is translated where it is shown (with :func:`_`)."""
    return message


@functools.lru_cache(maxsize=32)
def _notebook_language(path: str, mtime: float) -> str | None:
    try:
        with open(path, encoding="utf-8") as file:
            metadata = json.load(file).get("metadata", {})
        language = (metadata.get(METADATA) or {}).get("language")
        return str(language) if language else None
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def notebook_language() -> str | None:
    """The language the open notebook asks for (its ``unet_course.language`` metadata), if found."""
    session = os.environ.get("JPY_SESSION_NAME", "")
    if session.endswith(".ipynb") and Path(session).is_file():
        candidates = [Path(session)]  # JupyterLab names the open notebook: only its own language counts
    else:  # nbgrader (validate, autograde) runs the kernel in the notebook's folder
        try:
            candidates = sorted(Path.cwd().glob("*.ipynb"))[:5]
        except OSError:
            candidates = []
    for path in candidates:
        try:
            language = _notebook_language(str(path), path.stat().st_mtime)
        except OSError:
            continue
        if language:
            return language
    return None


def language() -> str:
    """The language messages are shown in (a locale name such as ``zh_CN``; ``en`` by default)."""
    chosen = os.environ.get(LANGUAGE_ENV, "").strip() or notebook_language()
    if not chosen:
        for variable in LOCALE_VARIABLES:
            value = os.environ.get(variable, "").strip()
            if value:
                chosen = value.split(":")[0]
                break
    chosen = (chosen or "en").split(".")[0].split("@")[0].replace("-", "_")
    return "en" if chosen in ("C", "POSIX", "") else chosen


@functools.lru_cache(maxsize=8)
def translation(lang: str) -> gettext.NullTranslations:
    """The catalogue of one language (English: none, the message ids are the text)."""
    candidates = [lang, lang.split("_")[0]]
    if lang.split("_")[0] == "zh" and lang not in ("zh_TW", "zh_HK"):
        candidates.insert(1, "zh_CN")  # zh, zh_SG, zh_Hans: Simplified Chinese
    return gettext.translation(DOMAIN, str(LOCALE_DIR), languages=candidates, fallback=True)


def _(message: str) -> str:
    """``message`` in the reader's language."""
    return translation(language()).gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    """The singular or plural form of a message for ``count``, in the reader's language."""
    return translation(language()).ngettext(singular, plural, count)
