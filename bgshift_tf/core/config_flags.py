"""absl flags declared from a config dict (a trainer's DEFAULT_CONFIG): one flag per key, its default the
config's value and its type the default's (bool, int, float, str, list), or an enum where choices are given.

    define_from_config(DEFAULT_CONFIG, {"batch_size": "Global batch size.", ...}, lower_bounds={"batch_size": 1})

Only the keys of `helps` become flags, so the rest of a config (flags declared elsewhere) is left alone.
`values(names)` reads flags back as keywords; `merge_known` merges a config into its defaults, refusing
unknown keys.
"""

from absl import flags

# Flags declared by `define_from_config` belong to its caller (the entry point's --helpshort lists them).
flags.disclaim_key_flags()

# isinstance order matters: bool is an int.
_DEFINERS = ((bool, flags.DEFINE_boolean), (int, flags.DEFINE_integer), (float, flags.DEFINE_float),
             (str, flags.DEFINE_string), (list, flags.DEFINE_list))


def define_from_config(defaults, helps, lower_bounds=None, choices=None, flag_values=flags.FLAGS):
    """Declares a flag for each `name: help` of `helps` with default `defaults[name]`.

    Args:
        defaults: {name: default value}; the value's type picks the flag type.
        helps: {name: help text}, in the order the flags are declared.
        lower_bounds: {name: lower bound} of numeric flags.
        choices: {name: allowed values}: these flags are enums.
        flag_values: the FlagValues to declare them in.
    """
    lower_bounds, choices = lower_bounds or {}, choices or {}
    for name, help_text in helps.items():
        default = defaults[name]
        if name in choices:
            flags.DEFINE_enum(name, default, list(choices[name]), help_text, flag_values=flag_values)
            continue
        define = next(definer for kind, definer in _DEFINERS if isinstance(default, kind))
        bounds = {"lower_bound": lower_bounds[name]} if name in lower_bounds else {}
        define(name, default, help_text, flag_values=flag_values, **bounds)


def values(names, flag_values=flags.FLAGS):
    """{name: parsed value} of the flags `names`: the keywords of a call whose parameters are named as the
    flags (an entry point passing its flags through)."""
    return {name: flag_values[name].value for name in names}


def merge_known(defaults, config, unknown_keys_error):
    """`defaults` updated with `config`; raises ValueError("<unknown_keys_error> [keys]; known: [...]") when
    `config` has keys `defaults` lacks (a trainer's DEFAULT_CONFIG and its caller's config)."""
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(f"{unknown_keys_error} {unknown}; known: {sorted(defaults)}")
    return {**defaults, **config}
