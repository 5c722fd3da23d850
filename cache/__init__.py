"""Container-scoped cache of S3 objects, revalidated by ETag."""

from cache.objects import CacheStats, ObjectCache, clear_caches, object_cache

__all__ = ["CacheStats", "ObjectCache", "clear_caches", "object_cache"]
