#!/bin/sh
# Entry point of the corpus app: serve the pages baked into the image.
echo "corpus app starting (cache at ${CACHE_HOST:-none})"
exec httpd -f -p 8080 -h /srv/www
