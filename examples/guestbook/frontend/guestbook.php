<?php
// The guestbook's API, as in the classic Kubernetes example:
//   GET /guestbook.php?cmd=set&key=messages&value=…  → {"message": "Updated"} (to the Redis master)
//   GET /guestbook.php?cmd=get&key=messages          → {"data": "…"}         (from a Redis replica)
// Redis is found by DNS (the Services' names, the default) or, with GET_HOSTS_FROM=env,
// through the Service environment variables the kubelet sets (REDIS_MASTER_SERVICE_HOST…).
// Every answer says which frontend pod served it (X-Served-By).

header('Content-Type: application/json');
header('X-Served-By: ' . gethostname());

function redis_for(string $service): Redis
{
    $host = $service;
    $port = 6379;
    if (getenv('GET_HOSTS_FROM') === 'env') {
        $prefix = strtoupper(str_replace('-', '_', $service));
        $host = getenv($prefix . '_SERVICE_HOST');
        $port = (int) getenv($prefix . '_SERVICE_PORT');
    }
    $redis = new Redis();
    $redis->connect($host, $port, 2.0);
    return $redis;
}

$cmd = $_GET['cmd'] ?? '';
$key = $_GET['key'] ?? 'messages';
try {
    if ($cmd === 'set') {
        redis_for('redis-master')->set($key, $_GET['value'] ?? '');
        echo json_encode(['message' => 'Updated']);
    } elseif ($cmd === 'get') {
        $value = redis_for('redis-replica')->get($key);
        echo json_encode(['data' => $value === false ? '' : $value]);
    } else {
        http_response_code(400);
        echo json_encode(['error' => 'cmd must be set or get']);
    }
} catch (Throwable $e) {
    http_response_code(503);
    echo json_encode(['error' => $e->getMessage()]);
}
