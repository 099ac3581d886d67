from django.urls import path

from hub.suites import views

urlpatterns = [
    path("suites/", views.suite_list, name="suites"),
    path("suites/new/", views.suite_new, name="suite-new"),
    path("suites/<int:pk>/", views.suite_detail, name="suite"),
    path("suites/<int:pk>/delete/", views.suite_delete, name="suite-delete"),
]
