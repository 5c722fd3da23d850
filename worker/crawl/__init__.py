"""Crawl mode: a run whose task list is a frontier that grows as pages are fetched.

modes     the spec's enumerations (scope kinds, query handling)
spec      the crawl spec: parsing and validating it, strictly
urls      normalisation (a page's identity), scope, registrable domains, partitions
seen      the run's seen-set of 64-bit URL hashes, compact in memory and in S3
frontier  the frontier log's segments: entries, their JSONL codec, host interleaving
robots    robots.txt per origin (RFC 9309), fetched once per run
sitemap   sitemap.xml and sitemap indexes, as a seed source
"""
