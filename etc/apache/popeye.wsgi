"""Apache mod_wsgi entry point: ``WSGIScriptAlias / .../popeye.wsgi/``.

mod_wsgi loads a script file by path, not a module by name.  This file only
re-exports the package's module-level ``application`` so that Apache runs
the installed code, and the settings are read the way ``popeye.wsgi`` reads
them (``etc/`` of the daemon's ``home=``, overlay named by the process group).
"""

from popeye.wsgi import application  # noqa: F401  (mod_wsgi looks it up by name)
