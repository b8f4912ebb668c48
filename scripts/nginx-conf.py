#!/usr/bin/env python3
"""Prints a whole nginx.conf around the README's load-balancer configuration (between its
`# BEGIN nginx.conf` and `# END nginx.conf` markers), with this machine's addresses: the same
configuration tests/balanced.rs runs, for the benchmarks.

    scripts/nginx-conf.py LISTEN_PORT PREFIX_DIR INSTANCE_PORT...
"""
import pathlib
import sys

listen, prefix, *instances = sys.argv[1:]
readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
start = readme.index("# BEGIN nginx.conf")
end = readme.index("# END nginx.conf", start)
block = readme[start:end]
servers = "".join(
    f"        server 127.0.0.1:{port} max_fails=3 fail_timeout=10s;\n" for port in instances
)
example = "".join(
    f"        server 10.0.0.1{n}:8080 max_fails=3 fail_timeout=10s;\n" for n in (1, 2, 3)
)
assert example in block, "the README's upstream block changed shape"
block = block.replace(example, servers).replace("listen 80;", f"listen 127.0.0.1:{listen};")
print(
    f"""worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{block}
}}"""
)
