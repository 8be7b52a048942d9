# -*- coding: utf-8 -*-
# Copyright: rat.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets out of everything a module returns: argv, messages, results.

Ansible masks a no_log value wherever it occurs as a substring. For a long random secret that is
right (it never occurs by chance, so any occurrence is a leak). A short one occurs inside ordinary
words: password ``rat`` turned "administrator" into "administ********or", garbling the message and
showing where the password's letters were. So secrets shorter than ``MIN_MASKABLE`` are masked only
where they stand as a value (a whole argv element, ``key=value``, ``user:secret@`` in a URL, a quoted
string) and the module warns that they are too short to be masked safely; longer secrets stay
masked everywhere, as Ansible does.
"""

from __future__ import annotations

import re

MASK = "********"
# Shorter secrets are words; 12 random characters do not turn up in a message by chance.
MIN_MASKABLE = 12
# What Ansible shows for a no_log option in the invocation it returns.
NO_LOG_PLACEHOLDER = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
# A value ends at the end of the text, at white space, or at one of these.
_VALUE_END = r"""(?=$|[\s@&;,)\]}'"/?#])"""


def _value_pattern(secret):
    escaped = re.escape(secret)
    return re.compile(
        r"(?:(?<=[=:])" + escaped + _VALUE_END      # key=value, key:value, user:secret@host
        + r"|(?<=')" + escaped + r"(?=')"           # 'secret'
        + r'|(?<=")' + escaped + r'(?=")'           # "secret"
        + r"|^" + escaped + r"$)")                  # the whole text (an argv element)


def mask_text(text, secrets):
    """``text`` with each secret replaced by MASK: anywhere when long, where it stands as a value when short."""
    for secret in secrets:
        if not secret or secret not in text:
            continue
        if len(secret) >= MIN_MASKABLE:
            text = text.replace(secret, MASK)
        else:
            text = _value_pattern(secret).sub(MASK, text)
    return text


def mask_argv(argv, secrets):
    """argv safe to return or log."""
    secrets = [s for s in secrets if s]
    return [mask_text(arg, secrets) for arg in argv]


def mask_data(data, secrets):
    """``data`` (nested dicts, lists, strings) with every string masked; keys included."""
    if isinstance(data, str):
        return mask_text(data, secrets)
    if isinstance(data, dict):
        return {mask_data(k, secrets): mask_data(v, secrets) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [mask_data(v, secrets) for v in data]
    return data


def short_secrets(module):
    """The no_log values of ``module`` too short to be masked safely (they are masked as values only)."""
    return sorted((v for v in module.no_log_values if isinstance(v, str) and 0 < len(v) < MIN_MASKABLE),
                  key=len, reverse=True)


def no_log_options(module):
    return sorted(name for name, spec in module.argument_spec.items() if spec.get("no_log"))


def take_over_short_secrets(module):
    """Mask short secrets ourselves (as values) instead of Ansible (as substrings); returns them.

    Ansible's own masking stays for every longer secret. The invocation Ansible would build from
    the raw parameters is built here, with each no_log option replaced as Ansible does.
    """
    short = short_secrets(module)
    if not short:
        return short
    for name in no_log_options(module):
        value = module.params.get(name)
        if isinstance(value, str) and value in short:
            module.warn(f"{name} is shorter than {MIN_MASKABLE} characters: too short to be masked safely in output "
                        "(it can be a part of other words), so it is masked only where it stands as a value. Use "
                        f"{MIN_MASKABLE} or more random characters.")
    module.no_log_values.difference_update(short)
    return short


def invocation(module, secrets):
    """The ``invocation`` Ansible returns, for a module whose short secrets were taken over."""
    hidden = set(no_log_options(module))
    args = {name: (NO_LOG_PLACEHOLDER if name in hidden and value is not None else mask_data(value, secrets))
            for name, value in module.params.items()}
    return {"module_args": args}
