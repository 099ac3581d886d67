from django.urls import path

from hub.catalog import views

urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("models/<int:pk>/", views.model_detail, name="model"),
    path("models/<int:pk>/compare/", views.compare, name="compare"),
    path("models/<int:pk>/files/<path:path>", views.base_file, name="base-file"),
    path("models/variants/<int:pk>/", views.variant_detail, name="variant"),
    path("models/variants/<int:pk>/files/<path:path>", views.variant_file, name="variant-file"),
]
