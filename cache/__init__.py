"""Container-scoped cache of S3 objects, revalidated by ETag."""

from cache.objects import CacheStats, ObjectCache, clear_caches, object_cache, pinned_get

__all__ = ["CacheStats", "ObjectCache", "clear_caches", "object_cache", "pinned_get"]
