# Evaluate one rendered NixOS module (or the flake) with STUB arguments, for the provision tests.
#
#   nix-instantiate --eval --strict --json --argstr file hosts/gpu-box/k3s.nix tests/support/provision_nix_stubs.nix
#   nix-instantiate --eval --strict --json --argstr file flake.nix --argstr kind flake tests/support/provision_nix_stubs.nix
#
# REAL: the Nix evaluator (nix-instantiate), the rendered file, every attribute in it.
# STUB (nixpkgs is not available here): `lib` holds only the functions the templates use,
# with simplified semantics (mkIf keeps or drops its content, mkDefault/mkForce are the
# identity, no module merging); `pkgs.<name>` are strings "/nix/store/stub-<name>";
# `config` holds the few options the modules read. The result is the module's attribute set
# as JSON, functions shown as "<function>", paths as strings; `_checks` carries evaluated
# facts that JSON cannot show (the unfree predicate applied to sample packages).
{ file, kind ? "module" }:
let
  stubPkg = name: "/nix/store/stub-${name}";
  lib = {
    mkIf = cond: value: if cond then value else { };
    mkDefault = value: value;
    mkForce = value: value;
    optional = cond: value: if cond then [ value ] else [ ];
    optionals = cond: value: if cond then value else [ ];
    hasPrefix = prefix: str: builtins.substring 0 (builtins.stringLength prefix) str == prefix;
    getName = pkg: if builtins.isString pkg then pkg else pkg.pname or pkg.name;
    concatStringsSep = builtins.concatStringsSep;
  };
  kernelPackages = {
    nvidiaPackages = builtins.listToAttrs (map (n: { name = n; value = { bin = stubPkg "nvidia-x11-${n}-bin"; name = "nvidia-x11-${n}"; }; })
      [ "stable" "production" "beta" "latest" "vulkan_beta" "legacy_535" "legacy_470" ]);
  };
  pkgs = {
    # python3.withPackages f -> "/nix/store/stub-python3-with-<names f picked, joined by ->"
    python3 = {
      outPath = stubPkg "python3";
      withPackages = f: stubPkg ("python3-with-" + builtins.concatStringsSep "-"
        (f (builtins.listToAttrs (map (n: { name = n; value = n; }) [ "huggingface-hub" "model-signing" "pyopenssl" "requests" ]))));
    };
    git = stubPkg "git";
    htop = stubPkg "htop";
    nvtopPackages.full = stubPkg "nvtop";
    nvidia-container-toolkit = { tools = stubPkg "nvidia-container-toolkit-tools"; };
    # writeShellScript name text -> "/nix/store/stub-<name>" (the text is the rendered file next to the module)
    writeShellScript = name: text: stubPkg name;
    linuxPackages = kernelPackages;
    linuxPackages_latest = kernelPackages;
    linuxPackages_6_6 = kernelPackages;
    linuxPackages_6_12 = kernelPackages;
  };
  config = {
    boot.kernelPackages = kernelPackages;
    hardware.nvidia.package = kernelPackages.nvidiaPackages.stable;
    services.tailscale = { enable = true; port = 41641; };
    services.k3s.package = stubPkg "k3s";
    systemd.package = stubPkg "systemd";
  };
  clean = v:
    if builtins.isFunction v then "<function>"
    else if builtins.isPath v then toString v
    else if builtins.isAttrs v then builtins.mapAttrs (_: clean) v
    else if builtins.isList v then map clean v
    else v;
  path = /. + file;
  module = import path { inherit config lib pkgs; };
  predicate = module.nixpkgs.config.allowUnfreePredicate or null;
  checks = if predicate == null then { } else {
    unfreeAllowed = map (pname: { inherit pname; allowed = predicate { inherit pname; }; })
      [ "nvidia-x11" "nvidia-persistenced" "nvidia-settings" "steam" "cuda_cudart" ];
  };
  flake = import path;
  flakeOutputs = flake.outputs {
    self = { };
    nixpkgs = { lib.nixosSystem = args: args; };
  };
in
if kind == "flake" then clean { inherit (flake) description inputs; outputs = flakeOutputs; }
else clean (module // { _checks = checks; })
