"""Finding an entry of a registry (activations, losses, metrics, initialisers) by name.

Every registry takes a name the same way: case-insensitively, directly or
through an alias, with a TypeError for a value that is not a name and a
ValueError listing the choices for an unknown one.
"""


def lookup(kind, name, entries, aliases=(), also=""):
    """``entries[name]``, ``name`` matched case-insensitively, directly or
    through ``aliases`` (alias -> canonical name).

    ``kind`` names the setting in the errors ("activation", "loss", ...);
    ``also`` describes what else the setting accepts (", or a callable ...")."""
    choices = sorted(entries) + sorted(aliases)
    if not isinstance(name, str):
        raise TypeError(f"{kind} must be a string, one of {choices}{also}; "
                        f"got {type(name).__name__} {name!r}")
    key = name.lower()
    key = dict(aliases).get(key, key) if aliases else key
    if key not in entries:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {choices}{also}")
    return entries[key]
