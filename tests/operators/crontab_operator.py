"""A small operator written with kopf (https://kopf.readthedocs.io) and the official
Kubernetes Python client, the way their users write one; the end-to-end test
tests/tests/operator_kopf.rs runs it against Skiff, outside the cluster.

A CronTab (the test's custom resource) gets a Deployment and a Service of its name,
owned by it (kopf.adopt); a change of spec.replicas scales the Deployment; the handlers'
results land in the CronTab's status; deleting the CronTab runs the deletion handler
(kopf's finalizer holds the deletion until it returns), which deletes what the operator
made.
"""

import os

import kopf
import kubernetes

GROUP = os.environ["CRONTAB_GROUP"]


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    settings.posting.level = 0
    settings.watching.server_timeout = 30
    kubernetes.config.load_kube_config()


def deployment(name, image, replicas):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image,
                                         "ports": [{"containerPort": 8080}]}]},
            },
        },
    }


def service(name):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


@kopf.on.create(GROUP, "crontabs")
def create_fn(spec, name, namespace, logger, **_):
    made = deployment(name, spec.get("image", "skiff/echo:latest"), spec.get("replicas", 1))
    svc = service(name)
    kopf.adopt(made)
    kopf.adopt(svc)
    kubernetes.client.AppsV1Api().create_namespaced_deployment(namespace, made)
    kubernetes.client.CoreV1Api().create_namespaced_service(namespace, svc)
    logger.info(f"created deployment and service {name}")
    return {"deployment": name, "service": name}


@kopf.on.field(GROUP, "crontabs", field="spec.replicas")
def scale_fn(old, new, name, namespace, logger, **_):
    if old is None:
        return None
    kubernetes.client.AppsV1Api().patch_namespaced_deployment_scale(
        name, namespace, {"spec": {"replicas": new}})
    logger.info(f"scaled {name} from {old} to {new}")
    return {"replicas": new}


@kopf.on.delete(GROUP, "crontabs")
def delete_fn(name, namespace, logger, **_):
    apps = kubernetes.client.AppsV1Api()
    core = kubernetes.client.CoreV1Api()
    for delete in (apps.delete_namespaced_deployment, core.delete_namespaced_service):
        try:
            delete(name, namespace)
        except kubernetes.client.exceptions.ApiException as e:
            if e.status != 404:
                raise
    logger.info(f"cleaned up {name}")
