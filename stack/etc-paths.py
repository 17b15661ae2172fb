"""Lists the options of a scratch Keystone or masakari-api config that still point at /etc.

Usage: /usr/bin/python3 etc-paths.py keystone|masakari CONFIG_FILE
Loads every option the installed service knows (the namespaces of oslo-config-generator), reads
CONFIG_FILE as the service does, and prints `group.option = path` for each value under /etc that
no Debian package ships (dpkg -S): the packaged policy and paste files may be read, but a key
repository, database, lock or log path there exists only on a machine where someone made it.
Exit 0 either way; the caller decides.
"""
import subprocess
import sys
from importlib.metadata import entry_points
from oslo_config import cfg

NAMESPACES = {
    'keystone': ['keystone', 'oslo.cache', 'oslo.log', 'oslo.messaging', 'oslo.policy', 'oslo.db', 'oslo.middleware', 'osprofiler'],
    'masakari': ['masakari.conf', 'keystonemiddleware.auth_token', 'oslo.db', 'oslo.log', 'oslo.messaging', 'oslo.middleware',
                 'oslo.policy', 'oslo.service.service', 'oslo.service.wsgi', 'oslo.concurrency', 'osprofiler'],
}

project, conf_file = sys.argv[1], sys.argv[2]
eps = {e.name: e for e in entry_points(group='oslo.config.opts')}
conf = cfg.ConfigOpts()
for ns in NAMESPACES[project]:
    if ns not in eps:
        continue
    for group, opts in eps[ns].load()():
        name = group.name if isinstance(group, cfg.OptGroup) else group
        for opt in opts:
            try:
                conf.register_opt(opt, group=None if name in (None, 'DEFAULT') else name)
            except cfg.DuplicateOptError:
                pass
conf(args=['--config-file', conf_file], project=project, default_config_files=[])


def packaged(path):
    return subprocess.run(['dpkg', '-S', path.rstrip('/')], capture_output=True).returncode == 0


def under_etc(value):
    values = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in values if isinstance(v, str) and v.startswith('/etc/') and not packaged(v)]


for name in [None] + sorted(conf._groups):
    group = conf if name is None else conf[name]
    opts = conf._opts if name is None else conf._groups[name]._opts
    for key in sorted(opts):
        try:
            value = group[key]
        except Exception:
            continue
        bad = under_etc(value)
        if bad:
            print(f"{name or 'DEFAULT'}.{key} = {', '.join(bad)}")
