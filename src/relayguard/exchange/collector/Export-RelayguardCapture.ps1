<#
.SYNOPSIS
    Read-only capture of what relayguard judges on an Exchange 2013, 2016, 2019 or SE server.

.DESCRIPTION
    Run in the Exchange Management Shell on (or against) the server. Writes one Export-Clixml
    file per cmdlet to -Path and changes nothing:

      ExSetup.xml                ExSetup.exe's FileVersionInfo (the build, security updates included)
      ExchangeServer.xml         Get-ExchangeServer (name, roles, AdminDisplayVersion)
      ReceiveConnector.xml       Get-ReceiveConnector -Server
      AcceptedDomain.xml         Get-AcceptedDomain
      ADPermission.xml           Get-ADPermission -User "NT AUTHORITY\ANONYMOUS LOGON" of each connector
      TransportAgent.xml         Get-TransportAgent (are the anti-spam agents installed?)
      RecipientFilterConfig.xml  Get-RecipientFilterConfig

    A cmdlet that fails leaves its file out (a warning says why); relayguard then reports those
    facts as unknown. Copy the directory to a machine with relayguard and run:

      relayguard facts --capture <directory>

.PARAMETER Path
    The directory to write to (created when missing).

.PARAMETER Server
    The Exchange server to capture (default: this computer).

.EXAMPLE
    .\Export-RelayguardCapture.ps1 -Path C:\Temp\relayguard-EX01
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [string]$Path,

    [string]$Server = $env:COMPUTERNAME
)

$ErrorActionPreference = 'Stop'
$anonymous = 'NT AUTHORITY\ANONYMOUS LOGON'
New-Item -ItemType Directory -Path $Path -Force | Out-Null

function Save-Capture {
    param(
        [string]$Name,
        [scriptblock]$Read
    )
    $file = Join-Path -Path $Path -ChildPath ($Name + '.xml')
    try {
        $items = @(& $Read)
        $items | Export-Clixml -Path $file -Encoding UTF8
        Write-Host ('{0}.xml: {1} object(s)' -f $Name, $items.Count)
    } catch {
        Write-Warning ('{0}.xml not written: {1}' -f $Name, $_.Exception.Message)
    }
}

Save-Capture -Name 'ExSetup' -Read {
    # As HealthChecker reads the build: ExSetup.exe on the PATH of the Exchange shell, else
    # under the install path.
    $command = Get-Command -Name 'ExSetup.exe' -ErrorAction SilentlyContinue
    if ($null -ne $command) {
        $command.FileVersionInfo
    } else {
        $exsetup = Join-Path -Path $env:ExchangeInstallPath -ChildPath 'bin\ExSetup.exe'
        (Get-Item -LiteralPath $exsetup).VersionInfo
    }
}
Save-Capture -Name 'ExchangeServer' -Read { Get-ExchangeServer -Identity $Server }
Save-Capture -Name 'ReceiveConnector' -Read { Get-ReceiveConnector -Server $Server }
Save-Capture -Name 'AcceptedDomain' -Read { Get-AcceptedDomain }
Save-Capture -Name 'ADPermission' -Read {
    foreach ($connector in @(Get-ReceiveConnector -Server $Server)) {
        $identity = $connector.Identity.ToString()
        Get-ADPermission -Identity $connector.Identity -User $anonymous |
            Select-Object -Property @(
                @{ Name = 'Identity'; Expression = { $identity } },
                @{ Name = 'User'; Expression = { $_.User.ToString() } },
                @{ Name = 'ExtendedRights'; Expression = { [string[]]@($_.ExtendedRights | ForEach-Object { $_.ToString() }) } },
                @{ Name = 'AccessRights'; Expression = { [string[]]@($_.AccessRights | ForEach-Object { $_.ToString() }) } },
                'Deny',
                'IsInherited'
            )
    }
}
Save-Capture -Name 'TransportAgent' -Read { Get-TransportAgent }
Save-Capture -Name 'RecipientFilterConfig' -Read { Get-RecipientFilterConfig }
