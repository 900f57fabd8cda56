"""`/api/` routes."""

from rest_framework.routers import DefaultRouter

from chat.api.views import ThreadViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("threads", ThreadViewSet, basename="thread")

urlpatterns = router.urls
