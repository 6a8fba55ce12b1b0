<?php
/**
 * Spoke's site tool: the work drush does for a site, done through the site's own code from the
 * PHP command line, run by the agent (packages/agent/src/php/sitephp.ts) with the platform root
 * as the working directory. It takes one JSON request on stdin and prints one result line,
 * "@@SPOKE-RESULT@@" followed by JSON, last; whatever the site's code prints is captured and
 * only its tail is reported, on failure.
 *
 * Request: {"op": "...", "kind": "drupal6|drupal7|drupal8|wordpress", "domain": "...", ...}.
 * Ops:
 *   install    — the site's installer, non-interactive (Drupal 6/7/8+): profile, locale, title,
 *                adminUser, adminEmail, adminPassword. The database comes from the settings file
 *                Spoke wrote. Result: {profile}.
 *   loginUrl   — a one-time login link for user 1 (Drupal, as `drush uli` makes it), or, for
 *                WordPress, a single-use token stored as a transient for Spoke's must-use plugin
 *                (token: the sha256 of the secret the master sends; ttl). Result: {url}.
 *   updates    — pending database updates: {pending: [{module, update, description}]}.
 *   update     — runs pending database updates and rebuilds caches (update.php's work).
 *                Result: {ran: [...], pending: [...]} (pending: what is still left).
 *   cronKey    — the site's cron key (Drupal 7/8+): {key}.
 *   prepareInstall — Drupal 8+: what must exist before the platform's own drush installs
 *                (the config sync directory).
 *   setPassword — Drupal 8+: sets adminUser's password to adminPassword (after drush
 *                site:install, so the password never is on a command line).
 * Errors: {"ok": false, "code": "...", "message": "..."}; codes SITE_NOT_INSTALLED,
 * SITE_ALREADY_INSTALLED, SITE_PHP_FAILED, UNSUPPORTED.
 */

const SPOKE_MARK = '@@SPOKE-RESULT@@';
// What the site's code creates stays writable by the web group (sites/*/files are setgid to it).
umask(0002);
$spoke_done = FALSE;

function spoke_out(array $result) {
  global $spoke_done;
  if ($spoke_done) {
    return;
  }
  $spoke_done = TRUE;
  while (ob_get_level() > 0) {
    $captured = ob_get_clean();
  }
  fwrite(STDOUT, "\n" . SPOKE_MARK . json_encode($result, JSON_UNESCAPED_SLASHES | JSON_PARTIAL_OUTPUT_ON_ERROR) . "\n");
}

function spoke_fail($code, $message) {
  spoke_out(['ok' => FALSE, 'code' => $code, 'message' => $message]);
  exit(0);
}

class SpokeFailure extends Exception {
  public $spokeCode;
  public function __construct($code, $message) {
    parent::__construct($message);
    $this->spokeCode = $code;
  }
}

// Drupal calls exit() in places (e.g. a redirect, drupal_goto, install_already_done_error): a
// result must still be printed, and a fatal error must say what it was.
register_shutdown_function(function () {
  global $spoke_done;
  if ($spoke_done) {
    return;
  }
  $e = error_get_last();
  if ($e && in_array($e['type'], [E_ERROR, E_PARSE, E_CORE_ERROR, E_COMPILE_ERROR, E_USER_ERROR], TRUE)) {
    spoke_out(['ok' => FALSE, 'code' => 'SITE_PHP_FAILED', 'message' => 'PHP fatal error: ' . $e['message'] . ' in ' . $e['file'] . ':' . $e['line']]);
    return;
  }
  spoke_out(['ok' => FALSE, 'code' => 'SITE_PHP_FAILED', 'message' => "the site's code ended the PHP process before Spoke's tool finished" . spoke_tail()]);
});

/** The last lines the site's code printed, for an error message. */
function spoke_tail() {
  $text = '';
  if (ob_get_level() > 0) {
    $text = ob_get_contents();
  }
  $text = trim(preg_replace('/\s+/', ' ', strip_tags((string) $text)));
  if ($text === '') {
    return '';
  }
  return ' (it printed: ' . (strlen($text) > 400 ? '...' . substr($text, -400) : $text) . ')';
}

/** The request globals a web request to the site would have. */
function spoke_server($domain, $script) {
  $root = getcwd();
  $_SERVER['HTTP_HOST'] = $domain;
  $_SERVER['SERVER_NAME'] = $domain;
  $_SERVER['SERVER_PORT'] = 80;
  $_SERVER['REMOTE_ADDR'] = '127.0.0.1';
  $_SERVER['SERVER_ADDR'] = '127.0.0.1';
  $_SERVER['SERVER_SOFTWARE'] = 'spoke-agent';
  $_SERVER['SERVER_PROTOCOL'] = 'HTTP/1.1';
  $_SERVER['REQUEST_METHOD'] = 'GET';
  $_SERVER['SCRIPT_NAME'] = $script;
  $_SERVER['PHP_SELF'] = $script;
  $_SERVER['SCRIPT_FILENAME'] = $root . $script;
  // The front page: base URLs come out as http://<domain>/ (not /index.php/...).
  $_SERVER['REQUEST_URI'] = $script === '/index.php' ? '/' : $script;
  $_SERVER['QUERY_STRING'] = '';
  $_SERVER['HTTP_USER_AGENT'] = 'spoke-agent';
  unset($_SERVER['argv'], $_SERVER['argc']);
  $_GET = [];
  $_POST = [];
  $_REQUEST = [];
}

// ------------------------------------------------------------------ Drupal 7 (and 6)

function spoke_d7_boot($req, $phase = NULL) {
  if (!defined('DRUPAL_ROOT')) {
    define('DRUPAL_ROOT', getcwd());
  }
  spoke_server($req['domain'], '/index.php');
  require_once DRUPAL_ROOT . '/includes/bootstrap.inc';
  drupal_bootstrap($phase === NULL ? DRUPAL_BOOTSTRAP_FULL : $phase);
  if (!db_table_exists('users') || !db_query('SELECT 1 FROM {users} WHERE uid = 1')->fetchField()) {
    throw new SpokeFailure('SITE_NOT_INSTALLED', 'the site has no Drupal installed in its database (no user 1)');
  }
}

function spoke_d7_install($req) {
  define('DRUPAL_ROOT', getcwd());
  define('MAINTENANCE_MODE', 'install');
  spoke_server($req['domain'], '/install.php');
  require_once DRUPAL_ROOT . '/includes/install.core.inc';
  $pass = $req['adminPassword'];
  $configure = [
    'site_name' => $req['title'],
    'site_mail' => $req['adminEmail'],
    'account' => ['name' => $req['adminUser'], 'mail' => $req['adminEmail'], 'pass' => ['pass1' => $pass, 'pass2' => $pass]],
    // Checkboxes: an empty list is "none ticked" (FALSE values are an illegal choice).
    'update_status_module' => [],
    'clean_url' => TRUE,
  ];
  install_drupal([
    'interactive' => FALSE,
    'parameters' => ['profile' => $req['profile'], 'locale' => $req['locale']],
    'forms' => ['install_configure_form' => $configure],
  ]);
  return ['profile' => $req['profile']];
}

function spoke_d6_install($req) {
  // Drupal 6 has no non-interactive installer API of its own (drush 4 drove install.php's forms),
  // and its code uses what PHP 7 removed (ereg, the mysql extension, call-time references).
  $version = '6';
  $system = @file_get_contents(getcwd() . '/modules/system/system.module');
  if ($system !== FALSE && preg_match("/define\\('VERSION',\\s*'([^']+)'\\)/", $system, $m)) {
    $version = $m[1];
  }
  if (PHP_MAJOR_VERSION >= 7) {
    throw new SpokeFailure('UNSUPPORTED', "Drupal $version core runs on PHP 5 only and this host runs PHP " . PHP_VERSION . '; move the site to a Drupal 7 or newer platform');
  }
  throw new SpokeFailure('UNSUPPORTED', "Drupal $version sites cannot be installed unattended on PHP " . PHP_VERSION . '; finish the install at install.php');
}

/**
 * Drupal's one-time link hashes the account's last login time, and its first use sets that time to
 * the second it is used. A first use within the same second as the previous login leaves the
 * time, and so the link, unchanged: the link would log in a second time. Returning the link only
 * once the clock has left the last login's second (at most a second's wait, and only right after
 * a login) makes every first use change the login time, so the link works exactly once.
 */
function spoke_wait_past_login($login) {
  // Bounded: a last login in the future (the clock was set back) is not waited for.
  $until = microtime(true) + 2;
  while (time() <= $login && microtime(true) < $until) {
    usleep(50000);
  }
}

function spoke_d7_login_url($req) {
  spoke_d7_boot($req);
  $account = user_load(1);
  if (!$account || empty($account->name)) {
    throw new SpokeFailure('SITE_NOT_INSTALLED', 'the site has no user 1');
  }
  if (!function_exists('user_pass_reset_url')) {
    throw new SpokeFailure('UNSUPPORTED', 'this Drupal has no one-time login links (user_pass_reset_url)');
  }
  spoke_wait_past_login((int) $account->login);
  return ['url' => user_pass_reset_url($account) . '/login', 'user' => $account->name];
}

function spoke_d7_updates($req) {
  spoke_d7_boot($req);
  require_once DRUPAL_ROOT . '/includes/install.inc';
  require_once DRUPAL_ROOT . '/includes/update.inc';
  drupal_load_updates();
  return ['pending' => spoke_pending_hooks()];
}

/** The pending hook_update_N() functions (Drupal 7 and 8+ share update_get_update_list()). */
function spoke_pending_hooks() {
  $pending = [];
  foreach (update_get_update_list() as $module => $info) {
    if (!empty($info['warning'])) {
      throw new SpokeFailure('SITE_PHP_FAILED', "module $module: " . strip_tags((string) $info['warning']));
    }
    foreach ($info['pending'] as $number => $description) {
      // Drupal 7 prefixes the description with the number ("7101 - Adds ...").
      $text = preg_replace('/^' . preg_quote((string) $number, '/') . '\s*-\s*/', '', trim(strip_tags((string) $description)));
      $pending[] = ['module' => $module, 'update' => (string) $number, 'description' => $text];
    }
  }
  return $pending;
}

/** Where update_do_one() starts in each module: its first pending update. */
function spoke_update_start() {
  $start = [];
  foreach (update_get_update_list() as $module => $info) {
    if (!empty($info['pending'])) {
      $start[$module] = array_keys($info['pending'])[0];
    }
  }
  return $start;
}

function spoke_d7_update($req) {
  // update.php's order: bootstrap, then the same update_do_one() calls its batch makes.
  define('MAINTENANCE_MODE', 'update');
  spoke_d7_boot($req);
  require_once DRUPAL_ROOT . '/includes/install.inc';
  require_once DRUPAL_ROOT . '/includes/update.inc';
  drupal_load_updates();
  update_fix_d7_requirements();
  $ran = spoke_run_updates(spoke_update_start(), 'update_resolve_dependencies');
  drupal_flush_all_caches();
  return ['ran' => $ran, 'pending' => spoke_pending_hooks()];
}

/** Runs update functions in dependency order as update_batch() does; stops at the first failure. */
function spoke_run_updates(array $start, $resolve) {
  $ran = [];
  if (!$start) {
    return $ran;
  }
  $updates = $resolve($start);
  $dependency_map = [];
  foreach ($updates as $function => $update) {
    $dependency_map[$function] = !empty($update['reverse_paths']) ? array_keys($update['reverse_paths']) : [];
  }
  foreach ($updates as $function => $update) {
    if (!$update['allowed']) {
      throw new SpokeFailure('SITE_PHP_FAILED', "update $function cannot run: " . (isset($update['missing_dependencies']) ? 'missing dependencies ' . implode(', ', $update['missing_dependencies']) : 'not allowed'));
    }
    unset($dependency_map[$function]);
    $context = ['sandbox' => [], 'results' => [], 'finished' => 1, 'message' => ''];
    do {
      $context['finished'] = 1;
      update_do_one($update['module'], $update['number'], $dependency_map, $context);
    } while (empty($context['results']['#abort']) && isset($context['finished']) && $context['finished'] < 1);
    $result = isset($context['results'][$update['module']][$update['number']]) ? $context['results'][$update['module']][$update['number']] : [];
    if (!empty($context['results']['#abort']) || (isset($result['#abort']) && $result['#abort'])) {
      $why = '';
      if (isset($result['results']['query'])) {
        $why = strip_tags((string) $result['results']['query']);
      }
      foreach ($result as $k => $q) {
        if (is_array($q) && isset($q['query']) && isset($q['success']) && !$q['success']) {
          $why = strip_tags((string) $q['query']);
        }
      }
      throw new SpokeFailure('SITE_PHP_FAILED', "update {$update['module']} {$update['number']} failed" . ($why !== '' ? ": $why" : ''));
    }
    $ran[] = ['module' => $update['module'], 'update' => (string) $update['number']];
  }
  return $ran;
}

function spoke_d7_cron_key($req) {
  spoke_d7_boot($req);
  return ['key' => (string) variable_get('cron_key', '')];
}

// ------------------------------------------------------------------ Drupal 8+

function spoke_d8_loader() {
  return require getcwd() . '/autoload.php';
}

function spoke_d8_boot($req) {
  $loader = spoke_d8_loader();
  spoke_server($req['domain'], '/index.php');
  $request = \Symfony\Component\HttpFoundation\Request::createFromGlobals();
  $kernel = \Drupal\Core\DrupalKernel::createFromRequest($request, $loader, 'prod');
  $kernel->boot();
  $kernel->preHandle($request);
  // URL generation and the current user's context need the request on the stack.
  \Drupal::service('request_stack')->push($request);
  if (!\Drupal::database()->schema()->tableExists('users') || !\Drupal::database()->query('SELECT 1 FROM {users} WHERE uid = 1')->fetchField()) {
    throw new SpokeFailure('SITE_NOT_INSTALLED', 'the site has no Drupal installed in its database (no user 1)');
  }
  return $kernel;
}

function spoke_d8_install($req) {
  // The config sync directory Spoke's settings.php names: without it Drupal's installer wants to
  // write settings.php itself.
  spoke_d8_prepare_install($req);
  $loader = spoke_d8_loader();
  spoke_server($req['domain'], '/core/install.php');
  require_once getcwd() . '/core/includes/install.core.inc';
  $pass = $req['adminPassword'];
  install_drupal($loader, [
    'interactive' => FALSE,
    'site_path' => 'sites/' . $req['domain'],
    'parameters' => ['profile' => $req['profile'], 'langcode' => $req['locale']],
    'forms' => [
      'install_configure_form' => [
        'site_name' => $req['title'],
        'site_mail' => $req['adminEmail'],
        'account' => ['name' => $req['adminUser'], 'mail' => $req['adminEmail'], 'pass' => ['pass1' => $pass, 'pass2' => $pass]],
        'enable_update_status_module' => FALSE,
        'enable_update_status_emails' => FALSE,
        'site_default_country' => '',
        'date_default_timezone' => 'UTC',
      ],
    ],
  ]);
  return ['profile' => $req['profile']];
}

function spoke_d8_prepare_install($req) {
  // What Spoke's settings.php names must exist before any installer runs (see spoke_d8_install).
  $sync = getcwd() . '/sites/' . $req['domain'] . '/private/config/sync';
  if (!is_dir($sync) && !@mkdir($sync, 02770, TRUE)) {
    throw new SpokeFailure('SITE_PHP_FAILED', "cannot create the config sync directory sites/{$req['domain']}/private/config/sync");
  }
  return [];
}

function spoke_d8_set_password($req) {
  spoke_d8_boot($req);
  $found = \Drupal::entityTypeManager()->getStorage('user')->loadByProperties(['name' => (string) $req['adminUser']]);
  $account = $found ? reset($found) : NULL;
  if (!$account) {
    throw new SpokeFailure('SITE_PHP_FAILED', "the site has no user {$req['adminUser']}");
  }
  $account->setPassword((string) $req['adminPassword']);
  $account->save();
  return ['user' => $account->getAccountName()];
}

function spoke_d8_login_url($req) {
  spoke_d8_boot($req);
  $account = \Drupal\user\Entity\User::load(1);
  if (!$account) {
    throw new SpokeFailure('SITE_NOT_INSTALLED', 'the site has no user 1');
  }
  if ($account->isBlocked()) {
    throw new SpokeFailure('SITE_PHP_FAILED', 'user 1 (' . $account->getAccountName() . ') is blocked');
  }
  spoke_wait_past_login((int) $account->getLastLoginTime());
  return ['url' => user_pass_reset_url($account) . '/login', 'user' => $account->getAccountName()];
}

function spoke_d8_pending() {
  $pending = spoke_pending_hooks();
  $post = \Drupal::service('update.post_update_registry')->getPendingUpdateInformation();
  foreach ($post as $module => $info) {
    foreach ($info['pending'] ?? [] as $name => $description) {
      $pending[] = ['module' => $module, 'update' => 'post_update_' . $name, 'description' => trim(strip_tags((string) $description))];
    }
  }
  return $pending;
}

function spoke_d8_updates($req) {
  spoke_d8_boot($req);
  require_once DRUPAL_ROOT . '/core/includes/install.inc';
  require_once DRUPAL_ROOT . '/core/includes/update.inc';
  drupal_load_updates();
  return ['pending' => spoke_d8_pending()];
}

function spoke_d8_update($req) {
  spoke_d8_boot($req);
  require_once DRUPAL_ROOT . '/core/includes/install.inc';
  require_once DRUPAL_ROOT . '/core/includes/update.inc';
  drupal_load_updates();
  if (function_exists('update_fix_compatibility')) {
    update_fix_compatibility();
  }
  $ran = spoke_run_updates(spoke_update_start(), 'update_resolve_dependencies');
  drupal_flush_all_caches();
  // Post-updates run after the hook_update_N() ones, on a rebuilt container (update.php's order).
  foreach (\Drupal::service('update.post_update_registry')->getPendingUpdateFunctions() as $function) {
    $context = ['sandbox' => [], 'results' => [], 'finished' => 1, 'message' => ''];
    do {
      $context['finished'] = 1;
      update_invoke_post_update($function, $context);
    } while (empty($context['results']['#abort']) && isset($context['finished']) && $context['finished'] < 1);
    if (!empty($context['results']['#abort'])) {
      throw new SpokeFailure('SITE_PHP_FAILED', "post-update $function failed");
    }
    $ran[] = ['module' => strstr($function, '_post_update_', TRUE) ?: $function, 'update' => $function];
  }
  drupal_flush_all_caches();
  return ['ran' => $ran, 'pending' => spoke_d8_pending()];
}

function spoke_d8_cron_key($req) {
  spoke_d8_boot($req);
  return ['key' => (string) \Drupal::state()->get('system.cron_key', '')];
}

// ------------------------------------------------------------------ WordPress

function spoke_wp_boot($req) {
  spoke_server($req['domain'], '/index.php');
  if (!defined('WP_USE_THEMES')) {
    define('WP_USE_THEMES', FALSE);
  }
  require getcwd() . '/wp-load.php';
  if (!function_exists('is_blog_installed') || !is_blog_installed()) {
    throw new SpokeFailure('SITE_NOT_INSTALLED', 'WordPress is not installed in the site database');
  }
}

function spoke_wp_login_url($req) {
  spoke_wp_boot($req);
  $admins = get_users(['role' => 'administrator', 'orderby' => 'ID', 'order' => 'ASC', 'number' => 1]);
  if (!$admins) {
    throw new SpokeFailure('SITE_PHP_FAILED', 'the site has no administrator account');
  }
  $token = (string) $req['token'];
  if (!preg_match('/^[0-9a-f]{64}$/', $token)) {
    throw new SpokeFailure('SITE_PHP_FAILED', 'bad token');
  }
  // Only the hash is stored; the plugin looks it up by the hash of what the link carries.
  set_transient('spoke_login_' . $token, ['user' => (int) $admins[0]->ID], (int) $req['ttl']);
  return ['url' => '', 'user' => $admins[0]->user_login];
}

// ------------------------------------------------------------------ dispatch

function spoke_handler($kind, $op) {
  $table = [
    'drupal6' => ['install' => 'spoke_d6_install'],
    'drupal7' => [
      'install' => 'spoke_d7_install',
      'loginUrl' => 'spoke_d7_login_url',
      'updates' => 'spoke_d7_updates',
      'update' => 'spoke_d7_update',
      'cronKey' => 'spoke_d7_cron_key',
    ],
    'drupal8' => [
      'install' => 'spoke_d8_install',
      'loginUrl' => 'spoke_d8_login_url',
      'updates' => 'spoke_d8_updates',
      'update' => 'spoke_d8_update',
      'cronKey' => 'spoke_d8_cron_key',
      'prepareInstall' => 'spoke_d8_prepare_install',
      'setPassword' => 'spoke_d8_set_password',
    ],
    'wordpress' => ['loginUrl' => 'spoke_wp_login_url'],
  ];
  return isset($table[$kind][$op]) ? $table[$kind][$op] : NULL;
}

$raw = stream_get_contents(STDIN);
$req = json_decode($raw, TRUE);
if (!is_array($req) || !isset($req['op'], $req['kind'], $req['domain'])) {
  spoke_fail('SITE_PHP_FAILED', 'bad request to the site tool');
}
$handler = spoke_handler($req['kind'], $req['op']);
if ($handler === NULL) {
  spoke_fail('UNSUPPORTED', "no {$req['op']} for a {$req['kind']} site");
}
ob_start();
try {
  $result = $handler($req);
  spoke_out(['ok' => TRUE] + $result);
}
catch (SpokeFailure $e) {
  $tail = $e->spokeCode === 'SITE_PHP_FAILED' ? spoke_tail() : '';
  spoke_out(['ok' => FALSE, 'code' => $e->spokeCode, 'message' => $e->getMessage() . $tail]);
}
catch (\Throwable $e) {
  $message = trim(preg_replace('/\s+/', ' ', strip_tags($e->getMessage())));
  if (stripos($message, 'already installed') !== FALSE || stripos($message, 'empty your existing database') !== FALSE || get_class($e) === 'Drupal\Core\Installer\Exception\AlreadyInstalledException') {
    spoke_out(['ok' => FALSE, 'code' => 'SITE_ALREADY_INSTALLED', 'message' => $message]);
  }
  else {
    spoke_out(['ok' => FALSE, 'code' => 'SITE_PHP_FAILED', 'message' => get_class($e) . ': ' . $message . spoke_tail()]);
  }
}
exit(0);
